"""End-of-response strategies, fed byte streams (no processes)."""

from __future__ import annotations

from toolfleet.tool.detect import Marker, Quiescence, Sentinel

M = "tfabc123> "
C = "tfabc123+ "


def feed_all(matcher, chunks, now=0.0):
    done = False
    for chunk in chunks:
        done = matcher.feed(chunk, now)
        if done:
            break
    return done


def test_marker_ends_at_the_marker_and_strips_it():
    m = Marker(M, C).begin(1, "t", 1000)
    assert feed_all(m, [b"42\r\n" + M.encode()])
    assert m.reply().output == b"42\r\n"
    assert not m.reply().incomplete


def test_marker_split_across_chunks():
    m = Marker(M, C).begin(1, "t", 1000)
    data = b"hello\r\n" + M.encode()
    chunks = [data[i : i + 3] for i in range(0, len(data), 3)]
    assert feed_all(m, chunks)
    assert m.reply().output == b"hello\r\n"


def test_output_resembling_the_prompt_does_not_end_the_reply():
    m = Marker(M, C).begin(1, "t", 1000)
    assert not m.feed(b">>> tfabc12> tf> tfabc124> \r\n", 0)
    assert m.feed(M.encode(), 0)
    assert m.reply().output == b">>> tfabc12> tf> tfabc124> \r\n"


def test_marker_counts_one_prompt_per_line_and_drops_intermediate_markers():
    m = Marker(M, C).begin(3, "t", 1000)
    assert not feed_all(m, [b"1\r\n" + M.encode() + b"2\r\n" + C.encode()])
    assert m.feed(b"3\r\n" + M.encode(), 0)
    assert m.reply().output == b"1\r\n2\r\n3\r\n"


def test_continuation_as_last_prompt_means_incomplete():
    m = Marker(M, C).begin(1, "t", 1000)
    assert m.feed(C.encode(), 0)
    assert m.reply().incomplete


def test_nonce_less_marker_needs_silence_and_the_end_of_output():
    det = Marker("> ", settle=0.3)
    m = det.begin(1, "t", 1000)
    assert not m.feed(b"quote:\n> not the end\n", 0.0)
    assert not m.feed(b"> ", 1.0)
    assert not m.idle(1.1)  # not quiet long enough yet
    assert not m.feed(b"more\n> ", 1.2)  # output went on: the earlier marker was text
    assert m.idle(1.6)
    assert m.reply().output == b"quote:\n> not the end\n> more\n"


def test_marker_guards_only_for_nonce_markers():
    assert Marker(M, C).guards() == (M, C)
    assert Marker("> ", settle=0.1).guards() == ()


def test_sentinel_reports_status_and_is_not_fooled_by_its_own_command():
    det = Sentinel("printf '%s%s:%s\\n' '{head}' '{tail}' \"$?\"")
    tag = "0123456789abcdef"
    command = det.suffix(tag)
    assert tag not in command  # the typed command cannot match
    m = det.begin(0, tag, 1000)
    assert not m.feed(command.encode() + b"out\r\n", 0)
    assert m.feed(tag.encode() + b":2\r\n", 0)
    reply = m.reply()
    assert reply.status == 2
    assert reply.output.endswith(b"out\r\n")


def test_sentinel_split_across_chunks():
    tag = "feedfacecafebeef"
    m = Sentinel("x").begin(0, tag, 1000)
    data = b"x" * 100 + tag.encode() + b":0\r\n"
    assert feed_all(m, [data[i : i + 7] for i in range(0, len(data), 7)])
    assert m.reply().output == b"x" * 100
    assert m.reply().status == 0


def test_quiescence_waits_for_silence_after_output():
    m = Quiescence(0.2).begin(1, "t", 1000)
    m.feed(b"abc", 10.0)
    assert not m.idle(10.1)
    assert m.idle(10.25)
    assert m.reply().output == b"abc"


def test_output_is_capped_and_flagged():
    m = Marker(M).begin(1, "t", 10)
    assert feed_all(m, [b"x" * 50, b"y" * 50 + M.encode()])
    reply = m.reply()
    assert reply.output == b"x" * 10
    assert reply.truncated


def test_output_so_far_includes_complete_lines_held_back_but_never_the_marker():
    matcher = Sentinel("printf '%s%s:%s\\n' '{head}' '{tail}' $?").begin(1, "a1b2c3d4", 10_000)
    assert not matcher.feed(b"ignoring\r\npartial", 0.0)
    assert matcher.so_far() == b"ignoring\r\n"  # a whole line: output; the rest may be more
    assert not matcher.feed(b" line\r\n", 0.0)
    assert matcher.so_far() == b"ignoring\r\npartial line\r\n"
    assert matcher.feed(b"a1b2c3d4:0\r\n", 0.0)
    assert matcher.reply().output == b"ignoring\r\npartial line\r\n"

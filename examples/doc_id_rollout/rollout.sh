#!/usr/bin/env bash
# The DOC_ID rollout on a real agent, end to end, on this machine:
#   a git repository of the example's tree (FILES modules, default 218), 3 workers of the
#   agent (AGENT: aider, the default, or claude, gemini, codex) in worktree workspaces of
#   it, a scripted model from tests/programs (no API key, no network), `toolfleet map
#   --step ... --apply`, then the checker.
# Run from the project's root: [AGENT=claude] examples/doc_id_rollout/rollout.sh [WORKDIR]
# Needs ./run's venv (.venv); the real aider (scripts/aider-venv makes .aider-venv) or
# the agent CLIs (scripts/agents-install makes .agents).
set -euo pipefail
root=$(cd "$(dirname "$0")/../.." && pwd)
agent=${AGENT:-aider}
work=${1:-$(mktemp -d "/tmp/toolfleet-$agent-rollout.XXXXXX")}
files=${FILES:-218}
python="$root/.venv/bin/python"
[ -x "$python" ] || { echo "no $root/.venv: run ./run demo (or ./run test) once first" >&2; exit 1; }
case "$agent" in
    aider) [ -x "$root/.aider-venv/bin/aider" ] || "$root/scripts/aider-venv" ;;
    claude|gemini|codex) "$root/scripts/agents-install" >/dev/null ;;
    *) echo "AGENT must be aider, claude, gemini or codex" >&2; exit 2 ;;
esac

pids=()
cleanup() { for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done; wait || true; }
trap cleanup EXIT

# the repository the agents edit (a git checkout of its own; yours is never touched)
"$python" "$root/examples/doc_id_rollout/make_tree.py" "$work/repo" --count "$files"
git -C "$work/repo" init -q -b main
git -C "$work/repo" -c user.email=you@example.com -c user.name=you add .
git -C "$work/repo" -c user.email=you@example.com -c user.name=you commit -qm "the tree"

# the scripted model, and the environment that points the agent at it
programs="$root/tests/programs"
case "$agent" in
    aider) "$python" "$programs/fake_openai.py" --env-file "$work/agent.env" ;;
    claude) "$python" "$programs/fake_anthropic.py" ;;
    gemini) "$python" "$programs/fake_gemini.py" ;;
    codex) "$python" "$programs/fake_responses.py" ;;
esac > "$work/model.port" 2> "$work/model.log" &
pids+=($!)
for _ in $(seq 100); do [ -s "$work/model.port" ] && break; sleep 0.1; done
port=$(head -1 "$work/model.port")
case "$agent" in
    aider) ;;  # fake_openai.py wrote agent.env
    claude) printf 'export %s\n' "ANTHROPIC_BASE_URL=http://127.0.0.1:$port" \
        ANTHROPIC_API_KEY=fake ANTHROPIC_MODEL=claude-sonnet-4-5 > "$work/agent.env" ;;
    gemini) printf 'export %s\n' "GOOGLE_GEMINI_BASE_URL=http://127.0.0.1:$port" \
        GEMINI_API_KEY=fake GEMINI_MODEL=gemini-2.5-flash > "$work/agent.env" ;;
    codex) printf 'export %s\n' "OPENAI_BASE_URL=http://127.0.0.1:$port/v1" \
        OPENAI_API_KEY=fake CODEX_MODEL=gpt-5-codex > "$work/agent.env" ;;
esac
# shellcheck disable=SC1091
source "$work/agent.env"

cat > "$work/profiles.toml" <<TOML
[profiles.$agent-wt]
extends = "$agent"
workspace = "worktree"
repo = "$work/repo"
TOML
export TOOLFLEET_PROFILES="$work/profiles.toml"
export PATH="$root/.aider-venv/bin:$root/.agents/node_modules/.bin:$root/.venv/bin:$PATH"
# a Redis of its own for this run (embedded redis-server on a free port)
redis_port=$("$python" -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
export TOOLFLEET_BROKER_URL="redis://127.0.0.1:$redis_port/0"

toolfleet up --profile "$agent-wt=3" > "$work/fleet.log" 2>&1 &
pids+=($!)
for _ in $(seq 600); do
    [ "$(toolfleet status --json 2>/dev/null | grep -c '"state": "ready"')" -ge 3 ] && break
    sleep 0.5
done

cd "$work/repo"
shopt -s globstar
request='Add a "# DOC_ID: {stem}" header line to {path}'
if [ "$agent" = aider ]; then  # aider edits the files in its chat: add, ask, drop
    steps=(--step '/add {path}' --step "$request" --step '/drop {path}')
else  # the agents find and edit the file with their own tools
    steps=(--step "$request")
fi
started=$SECONDS
toolfleet map --profile "$agent-wt" --retries 1 --apply --journal "$work/journal.jsonl" \
    "${steps[@]}" src/**/*.py
echo "map took $((SECONDS - started)) s"
"$python" "$root/examples/doc_id_rollout/make_tree.py" --check "$work/repo"
echo "repository: $work/repo (git log shows one merge per change); logs: $work"

#!/usr/bin/env bash
# The DOC_ID rollout on the real aider, end to end, on this machine:
#   a git repository of the example's tree (FILES modules, default 218), 3 aider workers
#   in worktree workspaces of it, the scripted model (tests/programs/fake_openai.py: no
#   API key, no network), `toolfleet map --step x3 --apply`, then the checker.
# Run from the project's root: examples/doc_id_rollout/aider_rollout.sh [WORKDIR]
# Needs ./run's venv (.venv) and the real aider (scripts/aider-venv makes .aider-venv).
set -euo pipefail
root=$(cd "$(dirname "$0")/../.." && pwd)
work=${1:-$(mktemp -d /tmp/toolfleet-aider-rollout.XXXXXX)}
files=${FILES:-218}
python="$root/.venv/bin/python"
[ -x "$python" ] || { echo "no $root/.venv: run ./run demo (or ./run test) once first" >&2; exit 1; }
[ -x "$root/.aider-venv/bin/aider" ] || "$root/scripts/aider-venv"

pids=()
cleanup() { for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done; wait || true; }
trap cleanup EXIT

# the repository the agents edit (a git checkout of its own; yours is never touched)
"$python" "$root/examples/doc_id_rollout/make_tree.py" "$work/repo" --count "$files"
git -C "$work/repo" init -q -b main
git -C "$work/repo" -c user.email=you@example.com -c user.name=you add .
git -C "$work/repo" -c user.email=you@example.com -c user.name=you commit -qm "the tree"

# the scripted model; it writes the environment that points aider at it
"$python" "$root/tests/programs/fake_openai.py" --env-file "$work/aider.env" \
    > "$work/model.port" 2> "$work/model.log" &
pids+=($!)
for _ in $(seq 100); do [ -s "$work/model.port" ] && break; sleep 0.1; done
# shellcheck disable=SC1091
source "$work/aider.env"

cat > "$work/profiles.toml" <<TOML
[profiles.aider-wt]
extends = "aider"
workspace = "worktree"
repo = "$work/repo"
TOML
export TOOLFLEET_PROFILES="$work/profiles.toml"
export PATH="$root/.aider-venv/bin:$root/.venv/bin:$PATH"
# a Redis of its own for this run (embedded redis-server on a free port)
port=$("$python" -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
export TOOLFLEET_BROKER_URL="redis://127.0.0.1:$port/0"

toolfleet up --profile aider-wt=3 > "$work/fleet.log" 2>&1 &
pids+=($!)
for _ in $(seq 600); do
    [ "$(toolfleet status --json 2>/dev/null | grep -c '"state": "ready"')" -ge 3 ] && break
    sleep 0.5
done

cd "$work/repo"
shopt -s globstar
toolfleet map --profile aider-wt --retries 1 --apply --journal "$work/journal.jsonl" \
    --step '/add {path}' \
    --step 'Add a "# DOC_ID: {stem}" header line to {path}' \
    --step '/drop {path}' \
    src/**/*.py
"$python" "$root/examples/doc_id_rollout/make_tree.py" --check "$work/repo"
echo "repository: $work/repo (git log shows one merge per change); logs: $work"

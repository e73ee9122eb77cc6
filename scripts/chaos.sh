#!/usr/bin/env bash
# The long variant of the fault-injection suite (nlds-embedded/tests/it/chaos/): the same test with
# thousands of files and several rounds of kills in a random order. The CI-sized run is part of
# scripts/test.sh; this one takes 10-30 minutes.
#
#   scripts/chaos.sh                       # 5 rounds, 100 files per put (5,000+ files), random order
#   ROUNDS=2 PER_PUT=50 scripts/chaos.sh   # shorter
#   SEED=7 scripts/chaos.sh                # another kill order
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

export NLDS_CHAOS_ROUNDS="${ROUNDS:-5}"
export NLDS_CHAOS_FILES_PER_PUT="${PER_PUT:-100}"
export NLDS_CHAOS_OUTAGE_SECS="${OUTAGE_SECS:-20}"
export NLDS_CHAOS_SEED="${SEED:-$RANDOM}"
echo "[chaos] rounds=$NLDS_CHAOS_ROUNDS files/put=$NLDS_CHAOS_FILES_PER_PUT outage=${NLDS_CHAOS_OUTAGE_SECS}s seed=$NLDS_CHAOS_SEED"
exec scripts/test.sh -p nlds-embedded -E 'test(chaos::)' --no-capture

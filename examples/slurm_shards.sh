#!/usr/bin/env bash
# Reference statistics of many shards as a Slurm array job: one 'fidkit stats --partial' per task, then one merge.
#
#   ls /data/eval/shard-*.tar > shards.txt                       # the shard list (any source strings fidkit reads)
#   sbatch --array=0-$(( $(wc -l < shards.txt) - 1 )) examples/slurm_shards.sh shards.txt parts
#   sbatch --dependency=afterok:<array job id> --wrap "examples/slurm_shards.sh --merge shards.txt parts ref.npz"
#
# Without Slurm, a loop over task ids does the same (what the test runs):
#   for i in $(seq 0 $(( $(wc -l < shards.txt) - 1 ))); do SLURM_ARRAY_TASK_ID=$i examples/slurm_shards.sh shards.txt parts; done
#   examples/slurm_shards.sh --merge shards.txt parts ref.npz
#
# A rerun of a task whose partial is already there (same shard content, same settings) is skipped; a failed
# task leaves no partial, and the merge names the shards whose partial is missing.  Extra arguments after the
# first two (e.g. --features inception,dinov2 --keep-features) go to 'fidkit stats'.
#SBATCH --job-name=fidkit-shards
#SBATCH --gres=gpu:1
#SBATCH --cpus-per-task=8
set -euo pipefail
FIDKIT=${FIDKIT:-fidkit}

if [[ "${1:-}" == "--merge" ]]; then
    list=$2 parts=$3 out=$4
    exec $FIDKIT merge "$parts/part-*.npz" --expect "$list" -o "$out"
fi

list=$1 parts=$2
shift 2
task=${SLURM_ARRAY_TASK_ID:?set by 'sbatch --array' (or by hand)}
shard=$(sed -n "$(( task + 1 ))p" "$list")
[[ -n "$shard" ]] || { echo "task $task: no line $(( task + 1 )) in $list" >&2; exit 2; }
mkdir -p "$parts"
exec $FIDKIT stats "$shard" --partial -o "$(printf '%s/part-%05d.npz' "$parts" "$task")" "$@"

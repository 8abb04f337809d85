# Sourced by the runfiles: the --seeds loop every experiment shares.
#   parse_seed_flags DEFAULT_SAVEDIR "$@"   sets SEEDS (space-separated), BASE (the savedir
#                                           above the seed folders) and FLAGS (the rest)
#   --seeds 0,1,2 (default 0; --seed K = --seeds K): each seed runs in BASE/seed<k> with
#   --seed k; a runfile skips a seed whose result file exists (seed_finished), and re-running
#   an unfinished one resumes it from its last checkpoint.
parse_seed_flags() {
  local seeds=0
  BASE=$1
  shift
  FLAGS=()
  while [ $# -gt 0 ]; do
    case "$1" in
      --seeds|--seed) seeds=${2:?"$1 needs a value, e.g. --seeds 0,1,2"}; shift 2 ;;
      --seeds=*|--seed=*) seeds=${1#*=}; shift ;;
      --savedir) BASE=${2:?"--savedir needs a folder"}; shift 2 ;;
      --savedir=*) BASE=${1#*=}; shift ;;
      *) FLAGS+=("$1"); shift ;;
    esac
  done
  BASE=${BASE/#\~/$HOME}  # --savedir=~/x: the shell left '~' as it is
  [[ "$seeds" =~ ^[0-9]+(,[0-9]+)*$ ]] || {
    echo "--seeds '$seeds' is not a comma-separated list of seeds, e.g. --seeds 0,1,2" >&2
    exit 2; }
  SEEDS=${seeds//,/ }
}

# seed_finished SEED RESULT_FILE: true (and says so) when the seed's result file exists
seed_finished() {
  if [ -f "$2" ]; then
    echo "seed $1: finished ($2 exists), skipped" >&2
    return 0
  fi
  return 1
}

export PYTHONUNBUFFERED=1 HF_HUB_OFFLINE=1 NO_ALBUMENTATIONS_UPDATE=1 PYTHONPATH=$PWD
nvidia-smi --query-gpu=name,memory.used --format=csv,noheader; nproc
python3 -c "import torch, yaml, tqdm, pandas, scipy; print(torch.__version__, torch.cuda.is_available())"
S="--data .hmc_data --seeds 0 --set fit_part=held_out --out $OUT/hmc_decision_runs.csv --scores /tmp/scores --no-checkpoints"
( timeout 470 python3 scripts/hmc_benchmark.py $S --datasets diatoms --methods control --device cuda --jobs 1 --threads 1 > $OUT/diatoms.log 2>&1 ) &
( timeout 470 python3 scripts/hmc_benchmark.py $S --datasets FUN enron --methods rare_node_bbma_neg --device cuda --jobs 8 --threads 1 > $OUT/rare.log 2>&1 ) &
( timeout 470 python3 scripts/hmc_benchmark.py $S --datasets FUN enron --methods control --device cpu --jobs 7 --threads 1 > $OUT/control.log 2>&1 ) &
sleep 60; nvidia-smi --query-gpu=utilization.gpu,memory.used --format=csv,noheader; uptime
wait
tail -3 $OUT/*.log
cd /tmp && tar cf scores.tar scores && split -b 15M scores.tar $OUT/scores.tar.part_ && ls -la $OUT

#!/bin/bash
# newcomer run on a fresh clone of firstday, with the onnx package's light_* models
cd /tmp/fd-fresh
export PYTHONPATH=$PWD FALCON_HOME=/tmp/fd-fresh/.falcon
F=".venv/bin/python -m tools.cli"
L=$(ls -d $PWD/.venv/lib/python*/site-packages/onnx/backend/test/data/light)
P="--broker-port 39092 --redis-port 36379"
step() { echo; echo "\$ falcon $*"; }
run() { step "$@"; $F "$@"; echo "[exit $?]"; }
run status
run submit sq --model-file $L/light_squeezenet.onnx
step "up $P --ui-port 38080"; /usr/bin/time -f "[falcon up took %e s]" $F up $P --ui-port 38080; echo "[exit $?]"
echo "this is a text file, not a model" > /tmp/fd-notamodel.onnx
run submit notamodel --model-file /tmp/fd-notamodel.onnx
for m in squeezenet resnet50 inception_v1; do
  run submit $m --model-file $L/light_$m.onnx --max-trials 4 --measure-s 1 --search-id newcomer-$m
  run watch newcomer-$m --timeout 300 --interval 2
done
run status
step "status | head -3"; $F status | head -3; echo "[exit ${PIPESTATUS[0]}]"
run audit newcomer-squeezenet
run report newcomer-squeezenet --out /tmp/fd-fresh/.falcon/reports/newcomer-squeezenet
run runners
run dead-letters
run submit sq --model-file $L/light_squeezenet.onnx --space deploy/config/cloud-space.yaml
run submit inception-v3 --replay-table ../shared/falcon-data/models/targets/reg-gru.csv --max-trials 2 --wait --timeout 120
run down
run status
run report newcomer-squeezenet
step "demo --max-trials 6 $P"; $F demo --max-trials 6 $P; echo "[exit $?]"

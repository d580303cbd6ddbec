SHELL := /bin/bash
VENV := .venv
APPS_VENV := .venv-apps
PY := $(VENV)/bin/python
TEST_ENV := DJANGO_SETTINGS_MODULE=tests.settings
SYSTEM_PACKAGES := xvfb x11vnc xterm chromium fonts-dejavu-core nginx curl jq python3

.PHONY: run test lint bench images clean

# Every package at the version constraints.txt names (the versions the suite is run with).
$(VENV)/.installed: pyproject.toml constraints.txt
	test -x $(PY) || python3 -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -c constraints.txt -e '.[dev]'
	touch $@

# The real web apps the app proxy's tests and benchmark run (tests/apps/: JupyterLab, httpbin,
# gunicorn), in a venv of their own: about 90 packages that stay out of constraints.txt.
$(APPS_VENV)/.installed: tests/apps/requirements.txt tests/apps/constraints.txt
	test -x $(APPS_VENV)/bin/python || python3 -m venv $(APPS_VENV)
	$(APPS_VENV)/bin/python -m pip install -q --upgrade pip
	$(APPS_VENV)/bin/python -m pip install -q -c tests/apps/constraints.txt -r tests/apps/requirements.txt
	touch $@

node_modules/.installed: package.json package-lock.json
	npm install --no-audit --no-fund --loglevel=error
	touch $@

# The embedded default: SQLite, in-memory channel layer, local desktops, the builtin assistant.
run: $(VENV)/.installed node_modules/.installed
	-scripts/system-deps.sh xvfb x11vnc xterm
	-scripts/desktop-account.sh
	DEBUG=1 $(PY) manage.py migrate --noinput
	DEBUG=1 $(PY) manage.py ensure_demo_admin
	DEBUG=1 $(PY) manage.py collectstatic --noinput -v0
	# A listen backlog of 2048, not Twisted's 50: a burst of connections is queued, not dropped
	# into a one-second SYN retry (docs/deployment.md).
	DEBUG=1 $(VENV)/bin/daphne -e tcp:port=8000:interface=127.0.0.1:backlog=2048 config.asgi:application

lint: $(VENV)/.installed
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

test: $(VENV)/.installed $(APPS_VENV)/.installed node_modules/.installed
	scripts/system-deps.sh $(SYSTEM_PACKAGES)
	scripts/desktop-account.sh
	scripts/services.sh
	scripts/podman.sh
	# The session images the container tests run (built once, then reused until images/ changes).
	images/build.sh all
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	# Models against migrations needs no server: an in-memory SQLite answers the history query.
	DATABASE_URL=sqlite://:memory: $(TEST_ENV) $(PY) manage.py makemigrations --check --dry-run
	$(TEST_ENV) $(PY) manage.py spectacular --validate --fail-on-warn --file /dev/null
	$(TEST_ENV) $(VENV)/bin/pytest

bench: $(VENV)/.installed $(APPS_VENV)/.installed node_modules/.installed
	scripts/system-deps.sh wrk xvfb x11vnc xterm
	scripts/services.sh
	scripts/podman.sh
	images/build.sh all
	$(PY) bench/run_all.py

# Podman, then the session images (images/README.md); each is built only when its sources changed.
images:
	scripts/podman.sh
	images/build.sh all

clean:
	rm -rf $(VENV) $(APPS_VENV) node_modules staticfiles .runtime

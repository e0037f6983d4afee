# fs-ha: `make demo` (the main job on this machine), `make test` (every test), `make build` (dist/)
SHELL := /bin/bash
NODE ?= node
VERSION := $(shell $(NODE) -p "require('./package.json').version")
PREFIX ?= /usr/local
SYSCONFDIR ?= /etc
DESTDIR ?=
ESBUILD := node_modules/.bin/esbuild

.PHONY: all deps build bundle test test-core test-e2e bench demo lint clean install uninstall deb docs

all: build

node_modules/.installed: package.json package-lock.json
	npm ci --no-audit --no-fund
	touch $@

deps: node_modules/.installed

src/sql.generated.ts: $(wildcard sql/*.sql) scripts/gen-sql.js
	$(NODE) scripts/gen-sql.js

bundle: deps src/sql.generated.ts
	$(ESBUILD) src/main.ts --bundle --platform=node --target=node20 --format=cjs \
	  --define:FS_HA_VERSION='"$(VERSION)"' --banner:js='#!/usr/bin/env node' \
	  --outfile=dist/fs-ha.js --log-level=warning
	chmod 755 dist/fs-ha.js

# dist/fs-ha: one standalone executable, built with Node's own single-executable-application support
# from THIS machine's node binary (nothing is downloaded): the bundle goes into a SEA blob with V8's
# code cache, and postject injects it into a copy of node. The links beside it are the keepalived names.
LINKS := check_fs notify_master notify_backup notify_fault notify_stop notify
SEA_FUSE := NODE_SEA_FUSE_fce680ab2cc467b6e072b8b5df1996b2

build: bundle
	mkdir -p dist/sea
	sed '1{/^#!/d}' dist/fs-ha.js > dist/sea/fs-ha.js
	printf '%s\n' '{ "main": "dist/sea/fs-ha.js", "output": "dist/sea/fs-ha.blob",' \
	  '"disableExperimentalSEAWarning": true, "useCodeCache": true }' > dist/sea/sea-config.json
	$(NODE) --experimental-sea-config dist/sea/sea-config.json
	cp "$$($(NODE) -p process.execPath)" dist/fs-ha.tmp
	node_modules/.bin/postject dist/fs-ha.tmp NODE_SEA_BLOB dist/sea/fs-ha.blob --sentinel-fuse $(SEA_FUSE) 2>&1 | grep -v "^warning: Can't find string offset" || true
	chmod 755 dist/fs-ha.tmp
	mv dist/fs-ha.tmp dist/fs-ha
	cd dist && for l in $(LINKS); do ln -sf fs-ha $$l; done
	dist/fs-ha --version

lint: deps src/sql.generated.ts
	node_modules/.bin/tsc -p .

# the simulator as a process of its own (the end-to-end tests run one per network namespace)
dist/fs-sim.js: deps src/sql.generated.ts $(wildcard test/sim/*.ts src/*/*.ts)
	$(ESBUILD) test/sim/main.ts --bundle --platform=node --target=node20 --format=cjs --outfile=$@ --log-level=warning

test: deps src/sql.generated.ts lint build dist/fs-sim.js
	$(NODE) --import tsx test/run.ts $(TESTS)

# the benchmark is bundled like the product, so it measures the code that ships (not tsx's transpiled copy)
bench: deps src/sql.generated.ts build dist/fs-sim.js
	$(ESBUILD) scripts/bench.ts --bundle --platform=node --target=node20 --format=cjs --outfile=dist/bench.js --log-level=warning
	$(NODE) dist/bench.js

demo: deps src/sql.generated.ts bundle
	$(NODE) --import tsx scripts/demo.ts $(DEMO_ARGS)

# the README's configuration reference, from src/config-schema.ts
docs: deps
	$(NODE) --import tsx scripts/gen-config-doc.ts

clean:
	rm -rf dist src/sql.generated.ts

# make install [PREFIX=/usr/local] [DESTDIR=...]: the binary and its links, the keepalived examples under
# share/, and an example config at /etc/fs-ha/fs-ha.yaml (0600: it holds passwords) that is never
# overwritten. Everything root-owned and not writable by others (keepalived's enable_script_security);
# as non-root (a DESTDIR build) the owner is left to the packager. Installs what `make build` made.
OWNER := $(shell [ "$$(id -u)" = 0 ] && echo "-o root -g root")
BINDIR = $(DESTDIR)$(PREFIX)/bin
SHAREDIR = $(DESTDIR)$(PREFIX)/share/fs-ha
CONFDIR = $(DESTDIR)$(SYSCONFDIR)/fs-ha

install:
	@test -x dist/fs-ha || { echo "make install: dist/fs-ha is missing; run make build first" >&2; exit 2; }
	install -d -m 0755 $(OWNER) $(BINDIR) $(SHAREDIR)/keepalived/pair $(SHAREDIR)/keepalived/farm $(SHAREDIR)/systemd
	install -m 0755 $(OWNER) dist/fs-ha $(BINDIR)/fs-ha
	for l in $(LINKS); do ln -sfn fs-ha $(BINDIR)/$$l; done
	install -m 0644 $(OWNER) keepalived/pair/keepalived.conf keepalived/pair/fs-ha.yaml $(SHAREDIR)/keepalived/pair/
	install -m 0644 $(OWNER) keepalived/farm/keepalived.conf keepalived/farm/fs-ha.yaml $(SHAREDIR)/keepalived/farm/
	install -m 0644 $(OWNER) README.md $(SHAREDIR)/README.md
	sed 's|@BINDIR@|$(PREFIX)/bin|' keepalived/systemd/fs-ha-watch.service > $(SHAREDIR)/systemd/fs-ha-watch.service
	chmod 0644 $(SHAREDIR)/systemd/fs-ha-watch.service
	install -d -m 0755 $(OWNER) $(CONFDIR)
	@if [ -e $(CONFDIR)/fs-ha.yaml ]; then echo "kept the existing $(CONFDIR)/fs-ha.yaml"; \
	 else install -m 0600 $(OWNER) keepalived/pair/fs-ha.yaml $(CONFDIR)/fs-ha.yaml && echo "installed an example $(CONFDIR)/fs-ha.yaml: edit it"; fi

# the configuration in /etc/fs-ha is yours: uninstall leaves it
uninstall:
	rm -f $(BINDIR)/fs-ha $(addprefix $(BINDIR)/,$(LINKS))
	rm -rf $(SHAREDIR)
	@echo "left $(CONFDIR) in place"

# make deb: dist/fs-ha_<version>_amd64.deb, built with dpkg-deb from a DESTDIR install (PREFIX=/usr)
deb: build
	rm -rf dist/deb && mkdir -p dist/deb/DEBIAN
	$(MAKE) --no-print-directory install DESTDIR=$(CURDIR)/dist/deb PREFIX=/usr SYSCONFDIR=/etc
	printf '%s\n' 'Package: fs-ha' 'Version: $(VERSION)' 'Architecture: amd64' 'Maintainer: fs-ha <fs-ha@example.invalid>' \
	  'Recommends: keepalived' 'Section: net' 'Priority: optional' \
	  'Description: FreeSWITCH high availability with keepalived' \
	  ' check_fs and notify hooks for keepalived, and the exactly-once takeover of a failed' \
	  " FreeSWITCH node's calls (recovery table rewrite + recover). One standalone executable." > dist/deb/DEBIAN/control
	echo /etc/fs-ha/fs-ha.yaml > dist/deb/DEBIAN/conffiles
	dpkg-deb --root-owner-group -Zgzip --build dist/deb dist/fs-ha_$(VERSION)_amd64.deb

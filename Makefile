# fs-ha: `make demo` (the main job on this machine), `make test` (every test), `make build` (dist/)
SHELL := /bin/bash
NODE ?= node
VERSION := $(shell $(NODE) -p "require('./package.json').version")
PREFIX ?= /usr/local
SYSCONFDIR ?= /etc
DESTDIR ?=
ESBUILD := node_modules/.bin/esbuild

.PHONY: all deps build bundle test test-core test-e2e bench chaos demo lint format clean install uninstall deb docs

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
	  --outfile=dist/fs-ha.js --metafile=dist/meta.json --log-level=warning
	chmod 755 dist/fs-ha.js

# dist/fs-ha: one standalone executable, built with Node's own single-executable-application support
# from THIS machine's node binary (nothing is downloaded): the bundle goes into a SEA blob with V8's
# code cache, and postject injects it into a copy of node, stripped first (the blob goes in after the
# strip, so it survives: test/cli runs the result; -12 MB). The links beside it are the keepalived names.
LINKS := check_fs notify_master notify_backup notify_fault notify_stop notify
SEA_FUSE := NODE_SEA_FUSE_fce680ab2cc467b6e072b8b5df1996b2

build: bundle
	mkdir -p dist/sea
	sed '1{/^#!/d}' dist/fs-ha.js > dist/sea/fs-ha.js
	printf '%s\n' '{ "main": "dist/sea/fs-ha.js", "output": "dist/sea/fs-ha.blob",' \
	  '"disableExperimentalSEAWarning": true, "useCodeCache": true }' > dist/sea/sea-config.json
	$(NODE) --experimental-sea-config dist/sea/sea-config.json
	cp "$$($(NODE) -p process.execPath)" dist/fs-ha.tmp
	if command -v strip >/dev/null; then strip --strip-all dist/fs-ha.tmp; fi
	node_modules/.bin/postject dist/fs-ha.tmp NODE_SEA_BLOB dist/sea/fs-ha.blob --sentinel-fuse $(SEA_FUSE) 2>&1 | grep -v "^warning: Can't find string offset" || true
	chmod 755 dist/fs-ha.tmp
	mv dist/fs-ha.tmp dist/fs-ha
	cd dist && for l in $(LINKS); do ln -sf fs-ha $$l; done
	dist/fs-ha --version

# the types, then Biome: the format (lineWidth 120, biome.json) and its linter; `make format` rewrites the format
lint: deps src/sql.generated.ts
	node_modules/.bin/tsc -p .
	node_modules/.bin/biome check

format: deps
	node_modules/.bin/biome format --write

# the simulator as a process of its own (the end-to-end tests run one per network namespace)
dist/fs-sim.js: deps src/sql.generated.ts $(wildcard test/sim/*.ts src/*/*.ts)
	$(ESBUILD) test/sim/main.ts --bundle --platform=node --target=node20 --format=cjs --outfile=$@ --log-level=warning

test: deps src/sql.generated.ts lint build dist/fs-sim.js
	$(NODE) --import tsx test/run.ts $(TESTS)

# the benchmark is bundled like the product, so it measures the code that ships (not tsx's transpiled copy)
bench: deps src/sql.generated.ts build dist/fs-sim.js
	$(ESBUILD) scripts/bench.ts --bundle --platform=node --target=node20 --format=cjs --outfile=dist/bench.js --log-level=warning
	$(NODE) dist/bench.js

# random faults under a continuous call load, judged per call (docs/chaos.md): ROUNDS, SEED, TOPOLOGY=pair|farm
chaos: deps src/sql.generated.ts build dist/fs-sim.js
	$(NODE) --import tsx test/chaos/main.ts

demo: deps src/sql.generated.ts bundle
	$(NODE) --import tsx scripts/demo.ts $(DEMO_ARGS)

# the configuration reference (docs/configuration.md), from src/config-schema.ts
docs: deps
	$(NODE) --import tsx scripts/gen-config-doc.ts

clean:
	rm -rf dist src/sql.generated.ts

# the man page fs-ha(8), from the command table and the configuration schema (the sources of --help and
# of the README's reference); HOOKS_DIR is where keepalived finds the hooks
dist/fs-ha.8: deps src/sql.generated.ts $(wildcard src/*.ts src/*/*.ts) scripts/gen-man.ts
	mkdir -p dist
	$(NODE) --import tsx scripts/gen-man.ts $(VERSION) $(PREFIX)/lib/fs-ha > $@

# make install [PREFIX=/usr/local] [DESTDIR=...]: the binary (the only command on PATH), the keepalived
# hooks as links in $(PREFIX)/lib/fs-ha (keepalived's config names them by absolute path), the watcher's
# systemd unit (not enabled), fs-ha(8), the templates under share/fs-ha, the README, and an example config
# at /etc/fs-ha/fs-ha.yaml (0600: it holds passwords) that is never overwritten. Everything root-owned and
# not writable by others (keepalived's enable_script_security); as non-root (a DESTDIR build) the owner
# is left to the packager. Installs what `make build` made.
OWNER := $(shell [ "$$(id -u)" = 0 ] && echo "-o root -g root")
BINDIR = $(DESTDIR)$(PREFIX)/bin
HOOKDIR = $(DESTDIR)$(PREFIX)/lib/fs-ha
UNITDIR = $(DESTDIR)$(PREFIX)/lib/systemd/system
MANDIR = $(DESTDIR)$(PREFIX)/share/man/man8
DOCDIR = $(DESTDIR)$(PREFIX)/share/doc/fs-ha
SHAREDIR = $(DESTDIR)$(PREFIX)/share/fs-ha
CONFDIR = $(DESTDIR)$(SYSCONFDIR)/fs-ha

install: dist/fs-ha.8
	@test -x dist/fs-ha || { echo "make install: dist/fs-ha is missing; run make build first" >&2; exit 2; }
	install -d -m 0755 $(OWNER) $(BINDIR) $(HOOKDIR) $(UNITDIR) $(MANDIR) $(DOCDIR) $(SHAREDIR)/keepalived/pair $(SHAREDIR)/keepalived/farm $(SHAREDIR)/keepalived/proxy-farm
	install -m 0755 $(OWNER) dist/fs-ha $(BINDIR)/fs-ha
	for l in $(LINKS); do ln -sfn ../../bin/fs-ha $(HOOKDIR)/$$l; done
	install -m 0755 $(OWNER) keepalived/agent_alive $(HOOKDIR)/agent_alive
	install -m 0644 $(OWNER) keepalived/pair/keepalived.conf keepalived/pair/fs-ha.yaml $(SHAREDIR)/keepalived/pair/
	install -m 0644 $(OWNER) keepalived/farm/keepalived.conf keepalived/farm/fs-ha.yaml $(SHAREDIR)/keepalived/farm/
	install -m 0644 $(OWNER) keepalived/proxy-farm/fs-ha.yaml keepalived/proxy-farm/kamailio.cfg keepalived/proxy-farm/fs-ha-dispatcher.list keepalived/proxy-farm/rtpengine.conf $(SHAREDIR)/keepalived/proxy-farm/
	install -m 0644 $(OWNER) README.md $(DOCDIR)/README.md
	install -d -m 0755 $(OWNER) $(DOCDIR)/docs
	install -m 0644 $(OWNER) docs/*.md $(DOCDIR)/docs/
	install -m 0644 $(OWNER) dist/fs-ha.8 $(MANDIR)/fs-ha.8
	for u in fs-ha-watch fs-ha-agent; do sed 's|@BINDIR@|$(PREFIX)/bin|' keepalived/systemd/$$u.service > $(UNITDIR)/$$u.service; chmod 0644 $(UNITDIR)/$$u.service; done
	install -d -m 0755 $(OWNER) $(CONFDIR)
	@if [ -e $(CONFDIR)/fs-ha.yaml ]; then echo "kept the existing $(CONFDIR)/fs-ha.yaml"; \
	 else install -m 0600 $(OWNER) keepalived/pair/fs-ha.yaml $(CONFDIR)/fs-ha.yaml && echo "installed an example $(CONFDIR)/fs-ha.yaml: edit it"; fi

# the configuration in /etc/fs-ha is yours: uninstall leaves it
uninstall:
	rm -f $(BINDIR)/fs-ha $(UNITDIR)/fs-ha-watch.service $(UNITDIR)/fs-ha-agent.service $(MANDIR)/fs-ha.8
	rm -rf $(HOOKDIR) $(SHAREDIR) $(DOCDIR)
	@echo "left $(CONFDIR) in place"

# make deb: dist/fs-ha_<version>_amd64.deb from a DESTDIR install (PREFIX=/usr), as Debian wants it:
# fs-ha(8) and the changelog compressed, the copyright file of everything the executable contains
# (scripts/gen-copyright.ts), lintian overrides with their reasons, Depends computed by dpkg-shlibdeps
# from the binary's real shared-library needs, md5sums. test/install runs lintian on it.
DEB := dist/fs-ha_$(VERSION)_amd64.deb
deb: build dist/fs-ha.8
	rm -rf dist/deb dist/shlibs && mkdir -p dist/deb/DEBIAN dist/shlibs/debian
	$(MAKE) --no-print-directory install DESTDIR=$(CURDIR)/dist/deb PREFIX=/usr SYSCONFDIR=/etc
	gzip -9n dist/deb/usr/share/man/man8/fs-ha.8
	$(NODE) --import tsx scripts/gen-copyright.ts dist/meta.json > dist/deb/usr/share/doc/fs-ha/copyright
	gzip -9n < scripts/deb/changelog > dist/deb/usr/share/doc/fs-ha/changelog.gz
	install -d -m 0755 dist/deb/usr/share/lintian/overrides
	install -m 0644 scripts/deb/lintian-overrides dist/deb/usr/share/lintian/overrides/fs-ha
	chmod 0644 dist/deb/usr/share/doc/fs-ha/copyright dist/deb/usr/share/doc/fs-ha/changelog.gz
	printf 'Source: fs-ha\n\nPackage: fs-ha\nArchitecture: amd64\n' > dist/shlibs/debian/control
	cd dist/shlibs && dpkg-shlibdeps -O -e ../deb/usr/bin/fs-ha 2>/dev/null | sed -n 's/^shlibs:Depends=//p' > ../depends
	test -s dist/depends
	printf '%s\n' 'Package: fs-ha' 'Version: $(VERSION)' 'Architecture: amd64' 'Maintainer: fs-ha maintainers <fs-ha@example.invalid>' \
	  "Installed-Size: $$(du -sk --exclude=DEBIAN dist/deb | cut -f1)" "Depends: $$(cat dist/depends)" \
	  'Recommends: keepalived' 'Section: net' 'Priority: optional' 'Homepage: https://example.invalid/fs-ha' \
	  'Description: FreeSWITCH high availability with keepalived' \
	  ' fs-ha is the health check and the notify hooks of keepalived for a FreeSWITCH' \
	  " cluster. On promotion it takes over the failed node's answered calls exactly" \
	  ' once: it rewrites their rows in the shared recovery table for this node and' \
	  ' has the local FreeSWITCH recover them, never touching a node that is alive.' \
	  ' One standalone executable; the hooks are in /usr/lib/fs-ha.' > dist/deb/DEBIAN/control
	echo /etc/fs-ha/fs-ha.yaml > dist/deb/DEBIAN/conffiles
	cd dist/deb && find . -path ./DEBIAN -prune -o -type f -printf '%P\0' | LC_ALL=C sort -z | xargs -0 md5sum > DEBIAN/md5sums
	dpkg-deb --root-owner-group -Zxz --build dist/deb $(DEB)

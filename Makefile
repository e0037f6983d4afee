# fs-ha: `make demo` (the main job on this machine), `make test` (every test), `make build` (dist/)
SHELL := /bin/bash
NODE ?= node
VERSION := $(shell $(NODE) -p "require('./package.json').version")
PREFIX ?= /usr/local
DESTDIR ?=
ESBUILD := node_modules/.bin/esbuild

.PHONY: all deps build bundle test test-core test-e2e bench demo lint clean install uninstall

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

build: bundle

lint: deps src/sql.generated.ts
	node_modules/.bin/tsc -p .

test: deps src/sql.generated.ts lint bundle
	$(NODE) --import tsx test/run.ts $(TESTS)

# the benchmark is bundled like the product, so it measures the code that ships (not tsx's transpiled copy)
bench: deps src/sql.generated.ts bundle
	$(ESBUILD) scripts/bench.ts --bundle --platform=node --target=node20 --format=cjs --outfile=dist/bench.js --log-level=warning
	$(NODE) dist/bench.js

demo: deps src/sql.generated.ts bundle
	$(NODE) --import tsx scripts/demo.ts $(DEMO_ARGS)

clean:
	rm -rf dist src/sql.generated.ts

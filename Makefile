# Shortcuts for the scripts; every target works on a fresh Debian/Ubuntu machine as root.
#   make              build (debug)
#   make test         everything CI runs (scripts/test.sh)
#   make cross        release binaries for x86_64 and aarch64, glibc 2.17 floor (cross/build.sh)
#   make packages     cross + .deb and .rpm for both architectures (packaging/build.sh)
#   make check-packages  lintian, rpmlint, systemd-analyze on the packages (packaging/check.sh)
#   make install DESTDIR=/tmp/root PREFIX=/usr   the package layout, without a package manager
#   make demo | bench | fmt | lint | clean

PREFIX ?= /usr
DESTDIR ?=
BIN ?= target/release/ssm-companion
UNITDIR ?= $(PREFIX)/lib/systemd/system

.PHONY: all build test demo bench fmt lint cross packages check-packages install clean

all: build

build:
	cargo build --locked

test:
	./scripts/test.sh

demo:
	./scripts/demo.sh

bench:
	./scripts/bench.sh

fmt:
	cargo fmt --all

lint:
	./scripts/lint.sh

cross:
	./cross/build.sh

packages: cross
	./packaging/build.sh

check-packages:
	./packaging/check.sh

install:
	test -x $(BIN) || cargo build --locked --release
	install -D -m 0755 $(BIN) $(DESTDIR)$(PREFIX)/bin/ssm-companion
	install -D -m 0644 systemd/ssm-companion.service $(DESTDIR)$(UNITDIR)/ssm-companion.service
	install -D -m 0644 packaging/config.d/10-defaults.toml $(DESTDIR)$(PREFIX)/lib/ssm-companion/config.d/10-defaults.toml
	install -D -m 0644 packaging/tmpfiles.d/ssm-companion.conf $(DESTDIR)$(PREFIX)/lib/tmpfiles.d/ssm-companion.conf
	test -e $(DESTDIR)/etc/ssm-companion/config.toml || \
		install -D -m 0644 packaging/config.toml $(DESTDIR)/etc/ssm-companion/config.toml
	install -d -m 0755 $(DESTDIR)/etc/ssm-companion/config.d

clean:
	cargo clean
	rm -rf .demo

# Infrastructure targets: the local runner image and the Docker socket proxy.
# Included from the main Makefile:  include mk/infra.mk
#
#   make runner-image           build flotilla/runner:<crate version> if missing (FORCE=1 rebuilds)
#   make runner-image-verify    run the image checks again (uv run as uid 10001, read-only root)
#   make proxy                  start the HAProxy socket proxy on $(PROXY_LISTEN)
#   make proxy-stop             stop it
#   make proxy-status           is it running and answering /_ping
#
# Variables (from the environment or the command line, e.g. `make proxy PROXY_LISTEN=127.0.0.1:23750`):
#   FORCE REFRESH VERIFY UV_VERSION SUITE DEBOOTSTRAP_MIRROR    see scripts/runner-image.sh
#   PROXY_LISTEN DOCKER_SOCKET PROXY_IDLE_TIMEOUT               see scripts/proxy.sh

# Taken when this file is read, so the targets work from any include path and any
# working directory.
INFRA_ROOT := $(abspath $(dir $(lastword $(MAKEFILE_LIST)))/..)

.PHONY: runner-image runner-image-verify proxy proxy-stop proxy-status

runner-image:
	@bash $(INFRA_ROOT)/scripts/runner-image.sh build

runner-image-verify:
	@bash $(INFRA_ROOT)/scripts/runner-image.sh verify

proxy:
	@bash $(INFRA_ROOT)/scripts/proxy.sh start

proxy-stop:
	@bash $(INFRA_ROOT)/scripts/proxy.sh stop

proxy-status:
	@bash $(INFRA_ROOT)/scripts/proxy.sh status

# camrelay: one image for both roles; run.sh picks the mode.
#   docker build -t camrelay .                      # runtime dependencies only
#   docker build --build-arg INSTALL_EXTRAS=dev .   # plus the `dev` extra (adev, pytest, linters)
#   docker run -p 8080:8080 camrelay                # the relay (CMD "api")
#   docker run -e API_BASE_URL=http://host:8080 camrelay camera
FROM python:3.11-slim

LABEL org.opencontainers.image.title="camrelay" \
      org.opencontainers.image.description="Long-polling relay between cameras that open no ports and their users"

# CAMRELAY_NO_VENV: run.sh uses this system Python instead of creating .venv.
ENV CAMRELAY_NO_VENV=1 \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_ROOT_USER_ACTION=ignore

# A fixed numeric id, so that `runAsNonRoot`-style checks can verify USER below.
RUN groupadd --system --gid 10001 camrelay \
    && useradd --system --no-log-init --uid 10001 --gid camrelay \
        --create-home --home-dir /home/camrelay --shell /usr/sbin/nologin camrelay

WORKDIR /app

# Dependencies first, from setup.cfg alone, so that a code change reuses this layer:
# install_requires, plus the extras named in INSTALL_EXTRAS (comma-separated, e.g. "dev").
ARG INSTALL_EXTRAS=""
COPY setup.cfg ./
RUN python -c "import configparser, os; \
        cfg = configparser.ConfigParser(interpolation=None); cfg.read('setup.cfg'); \
        extras = [name.strip() for name in os.environ.get('INSTALL_EXTRAS', '').split(',') if name.strip()]; \
        groups = [cfg['options']['install_requires']] + [cfg['options.extras_require'][name] for name in extras]; \
        print(*(line.strip() for group in groups for line in group.splitlines() if line.strip()), sep=chr(10))" \
        > /tmp/requirements.txt \
    && pip install --no-cache-dir --requirement /tmp/requirements.txt \
    && rm /tmp/requirements.txt

# Then the project itself (its dependencies are already satisfied, so this is quick).
COPY pyproject.toml README.md ./
COPY common ./common
COPY server ./server
COPY camera ./camera
# "./" (not ".") so that hadolint sees a local path rather than an unpinned package (DL3013).
RUN pip install --no-cache-dir "./${INSTALL_EXTRAS:+[${INSTALL_EXTRAS}]}" \
    && rm -rf build ./*.egg-info
COPY --chmod=0755 run.sh ./

# The code stays root-owned (read-only to the service); nothing runs as root from here on.
USER 10001:10001

EXPOSE 8080

# No curl in a slim image: probe /healthz with Python (bypassing any HTTP_PROXY that Docker
# may inject). The same image also runs the camera and one-shot modes, which serve no HTTP:
# then the check passes without probing. The mode is read from MODE and from PID 1's command
# line (docker-init's `-- ./run.sh camera`, or the exec'd `python3 -m camera`), because run.sh
# lets its argument win over MODE and `docker run camrelay camera` sets no MODE at all.
HEALTHCHECK --interval=10s --timeout=5s --start-period=15s --retries=3 \
    CMD ["python", "-c", "import os, sys, urllib.request as request; \
        argv = open('/proc/1/cmdline', 'rb').read().decode(errors='replace').split(chr(0)); \
        quiet = {'camera', 'test', 'lint', 'bench'} & {os.environ.get('MODE', ''), *argv}; \
        url = 'http://127.0.0.1:%s/healthz' % (os.environ.get('PORT') or '8080'); \
        sys.exit(0) if quiet else request.build_opener(request.ProxyHandler({})).open(url, timeout=4).close()"]

# Exec form, and run.sh `exec`s Python: SIGTERM reaches the server/camera directly.
ENTRYPOINT ["./run.sh"]
CMD ["api"]

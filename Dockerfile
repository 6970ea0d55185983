# rproxy in one image: standalone (docker run -p 8080:8080 rproxy shows the demo app) or as a
# JupyterHub single-user image (DockerSpawner, KubeSpawner) without change.
# Build: docker build -t rproxy .            with a desktop: --build-arg DESKTOP=yes
FROM python:3.11-slim-bookworm

ARG DESKTOP=no
ENV PIP_NO_CACHE_DIR=1 \
    PYTHONUNBUFFERED=1 \
    NB_USER=jovyan \
    NB_UID=1000 \
    NB_GID=100

# The desktop variant: noVNC and TigerVNC from Debian, and a terminal to start with.
RUN if [ "$DESKTOP" = "yes" ]; then \
        apt-get update \
        && apt-get install -y --no-install-recommends novnc tigervnc-standalone-server xterm \
        && rm -rf /var/lib/apt/lists/*; \
    fi

# The Jupyter convention: UID 1000, GID 100 (Debian's "users" group).
RUN useradd --uid 1000 --gid 100 --create-home --shell /bin/bash jovyan

COPY pyproject.toml README.md /src/
COPY rproxy /src/rproxy
RUN pip install /src && rm -rf /src
COPY examples/demo /opt/rproxy/examples/demo

EXPOSE 8080 8081
# Healthy while rproxy answers below 500 under its prefix (rproxy-healthcheck): 200 standalone
# when the app is up, 403 under a hub (status wants a login there), 503 while the app is down.
HEALTHCHECK --interval=30s --timeout=5s --start-period=30s CMD ["rproxy-healthcheck"]

# As root, the entrypoint gives the home to NB_UID:NB_GID and drops to that user for good;
# it then execs the command (so `docker run rproxy bash` works too).
ENTRYPOINT ["rproxy-entrypoint"]
# rproxy listens on 8080, or where JUPYTERHUB_SERVICE_URL says under a hub.
CMD ["rproxy", "--", "python", "/opt/rproxy/examples/demo/app.py", "--port", "{port}"]

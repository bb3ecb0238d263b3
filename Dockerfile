# shopfloor flows for a Prefect Docker work pool. `make image` builds it with no registry
# and no package index (README "Run it on Docker"):
#   scripts/docker-wheelhouse.sh  the Python packages as wheels, built on the host
#   scripts/docker-base.sh        BASE_IMAGE, or a local Debian bookworm made with debootstrap
#   docker build --network host --build-arg BASE_IMAGE=... -t shopfloor:latest .
# Layers go from slowest-changing to fastest: system packages, Python dependencies (the
# wheelhouse), then the code, so a code change rebuilds only the last layers.
ARG BASE_IMAGE=python:3.11-slim-bookworm

FROM ${BASE_IMAGE} AS system
ENV DEBIAN_FRONTEND=noninteractive
# Java 17 for Spark and the JDBC drivers it reads the historian with; Python 3.11 from
# Debian when the base has none (the debootstrap base). No documentation, translations or
# javac's symbol table (ct.sym): 60 MB nobody reads in a flow-run container.
# (openjdk's postinst needs /usr/share/man/man1, which slim bases leave out.)
RUN mkdir -p /usr/share/man/man1 \
 && apt-get update \
 && apt-get install -y --no-install-recommends \
      openjdk-17-jre-headless libpostgresql-jdbc-java libxerial-sqlite-jdbc-java libmariadb-java \
 && if ! command -v python3 >/dev/null; then \
      apt-get install -y --no-install-recommends python3 python3-venv; fi \
 && apt-get clean && rm -rf /var/lib/apt/lists/* /var/cache/apt/*.bin \
 && rm -rf /usr/share/doc/* /usr/share/man/* /usr/share/locale/* \
      /usr/lib/jvm/java-17-openjdk-*/lib/ct.sym

# The dependencies in a virtual environment of their own stage: the wheelhouse is only in
# this stage, never in the image.
FROM system AS dependencies
COPY .shopfloor/wheelhouse /wheels
COPY scripts/docker-prune.sh scripts/docker-smoke.py /tmp/
# --no-compile, then the smoke check compiles what a flow run imports: byte code for the
# whole tree would add 180 MB. The prune drops what no flow uses (docker-prune.sh).
RUN python3 -m venv /opt/venv \
 && /opt/venv/bin/pip install --quiet --no-index --find-links /wheels --no-cache-dir \
      --no-compile --disable-pip-version-check -r /wheels/requirements.txt \
 && sh /tmp/docker-prune.sh /opt/venv/lib/python3.11/site-packages \
 && /opt/venv/bin/python /tmp/docker-smoke.py

FROM system
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    SPARK_LOCAL_IP=127.0.0.1 \
    SHOPFLOOR_SPARK_JARS=/usr/share/java/postgresql.jar,/usr/share/java/sqlite-jdbc.jar,/usr/share/java/mariadb-java-client.jar \
    SHOPFLOOR_HOME=/opt/shopfloor/.shopfloor
COPY --from=dependencies /opt/venv /opt/venv

# The user the flows run as; its SHOPFLOOR_HOME and the mount points of the pool's named
# volumes exist here, owned by it, so a new volume starts writable by that user.
RUN useradd --create-home --uid 10001 shopfloor \
 && mkdir -p /opt/shopfloor/.shopfloor/buffer /opt/shopfloor/.shopfloor/lake \
 && chown -R shopfloor /opt/shopfloor/.shopfloor

# The code, at the working directory prefect.yaml's pull step sets.
WORKDIR /opt/shopfloor
COPY pyproject.toml README.md prefect.yaml operations.yaml ./
COPY maps ./maps
COPY config ./config
COPY shopfloor ./shopfloor
COPY blocks ./blocks
COPY tasks ./tasks
COPY flows ./flows
COPY demo_steps ./demo_steps
COPY deployments ./deployments
# setuptools and wheel are in the venv (from the wheelhouse): no index, no build isolation.
RUN pip install --quiet --no-deps --no-index --no-build-isolation . \
 && rm -rf build *.egg-info \
 && python -c "import flows.modbus_capture, flows.hourly_aggregation, flows.s3_compaction, flows.spark_extraction, demo_steps.flow, deployments.cli"

USER shopfloor
# A flow run reports to the API it was given: unhealthy when that API does not answer.
# Without PREFECT_API_URL (a one-off `docker run`), healthy.
HEALTHCHECK --interval=30s --timeout=10s --start-period=30s --retries=3 \
  CMD python -c "import os, urllib.request as u; a = os.environ.get('PREFECT_API_URL'); a and u.urlopen(a.rstrip('/') + '/health', timeout=5)"
CMD ["shopfloor", "--help"]

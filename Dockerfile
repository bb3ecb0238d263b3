# shopfloor flows for a Prefect Docker work pool.
#   docker build -t shopfloor:latest .
# Layers go from slowest-changing to fastest: system packages, Python dependencies
# (from pyproject.toml's pins, as `make` installs them), then the code.
FROM python:3.11-slim-bookworm

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    SPARK_LOCAL_IP=127.0.0.1 \
    SHOPFLOOR_SPARK_JARS=/usr/share/java/postgresql.jar,/usr/share/java/sqlite-jdbc.jar,/usr/share/java/mariadb-java-client.jar

# Java 17 for Spark and the JDBC drivers it reads the historian with.
RUN apt-get update \
 && apt-get install -y --no-install-recommends \
      openjdk-17-jre-headless libpostgresql-jdbc-java libxerial-sqlite-jdbc-java libmariadb-java \
 && rm -rf /var/lib/apt/lists/*

WORKDIR /opt/shopfloor

# Dependencies only: this layer is rebuilt when pyproject.toml changes, not the code.
COPY pyproject.toml ./
RUN python -c "import tomllib; d = tomllib.load(open('pyproject.toml', 'rb')); \
print('\n'.join(d['project']['dependencies']))" > /tmp/requirements.txt \
 && pip install -r /tmp/requirements.txt \
 && rm /tmp/requirements.txt

# The code, at the working directory prefect.yaml's pull step sets.
COPY README.md prefect.yaml operations.yaml ./
COPY maps ./maps
COPY config ./config
COPY shopfloor ./shopfloor
COPY blocks ./blocks
COPY tasks ./tasks
COPY flows ./flows
COPY demo_steps ./demo_steps
COPY deployments ./deployments
RUN pip install --no-deps . \
 && useradd --create-home --uid 10001 shopfloor \
 && mkdir -p /opt/shopfloor/.shopfloor \
 && chown -R shopfloor /opt/shopfloor

USER shopfloor
ENV SHOPFLOOR_HOME=/opt/shopfloor/.shopfloor

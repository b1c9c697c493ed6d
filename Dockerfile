# The smartcity image: ingester, API and simulators; docker-compose.yml runs one per service.
FROM python:3.11-slim
ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1
WORKDIR /app
COPY . /app
RUN pip install "/app[server]" \
    && useradd --system --uid 10001 --home-dir /data --create-home smartcity
USER smartcity
WORKDIR /data
ENTRYPOINT ["smartcity"]
CMD ["--help"]

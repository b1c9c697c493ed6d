# The smartcity image: ingester, API, OCPP gateway and simulators; one per compose service.

# bootstrap-italia for the API's public page, pinned by api/web/package-lock.json: the same
# `npm ci` scripts/bootstrap runs for a local checkout.
FROM node:20-slim AS web
WORKDIR /web
COPY api/web/package.json api/web/package-lock.json ./
RUN npm ci --no-audit --no-fund --loglevel=error

FROM python:3.11-slim
ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1
WORKDIR /app
COPY . /app
RUN pip install "/app[server]" \
    && useradd --system --uid 10001 --home-dir /data --create-home smartcity
# the installed api package has no node_modules beside it: point the API at the built assets
COPY --from=web /web/node_modules/bootstrap-italia/dist /opt/smartcity/bootstrap-italia
ENV SMARTCITY_API_ASSETS_DIR=/opt/smartcity/bootstrap-italia
USER smartcity
WORKDIR /data
ENTRYPOINT ["smartcity"]
CMD ["--help"]

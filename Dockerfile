# The app server (and, with another command, the local emulator) as one production image.
#   docker build -t oss-upload-server .
#   docker run --env-file prod.env -p 8000:8000 oss-upload-server
# Settings come from the environment only (docs/configuration.md); nothing secret is baked in.

# --- build wheels (crcmod's C extension needs a compiler; the final image has none) ---------
FROM python:3.11-slim AS wheels
RUN apt-get update \
 && apt-get install -y --no-install-recommends build-essential \
 && rm -rf /var/lib/apt/lists/*
COPY requirements/ /tmp/requirements/
RUN pip wheel --no-cache-dir --wheel-dir /wheels -r /tmp/requirements/prod.txt

# --- runtime ---------------------------------------------------------------------------------
FROM python:3.11-slim
ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    APP_ENV=production \
    GUNICORN_BIND=0.0.0.0:8000
WORKDIR /app

RUN groupadd --system --gid 10001 app \
 && useradd --system --uid 10001 --gid app --home-dir /app --shell /usr/sbin/nologin app

COPY --from=wheels /wheels /wheels
COPY requirements/ requirements/
RUN pip install --no-index --find-links /wheels -r requirements/prod.txt && rm -rf /wheels

COPY --chown=app:app . .

# Static files are collected (hashed and compressed for whitenoise) at build time. Production
# settings refuse to load without their secrets, so this one step gets throwaway values; none
# of them ends up in the image's environment. The app's bytecode is compiled here too: the
# image never writes it (PYTHONDONTWRITEBYTECODE, a read-only /app), and without it every worker
# and every manage.py job would compile the app's modules from source at start.
RUN APP_ENV=production \
    SECRET_KEY=collectstatic-only-not-a-real-secret-collectstatic-only-not-a-real-secret \
    ALLOWED_HOSTS=localhost \
    DATABASE_URL=sqlite:////tmp/collectstatic.sqlite3 \
    REDIS_URL=redis://localhost:6379/0 \
    ALIBABA_ACCESS_KEY_ID=build ALIBABA_ACCESS_KEY_SECRET=build \
    STS_ENDPOINT=https://sts.aliyuncs.com STS_ROLE_ARN=acs:ram::0:role/build \
    OSS_BUCKET=build OSS_REGION=cn-hangzhou OSS_ENDPOINT=https://oss-cn-hangzhou.aliyuncs.com \
    OSS_CALLBACK_URL=https://localhost/api/oss/callback/ \
    python manage.py collectstatic --noinput -v 0 \
 && python -m compileall -q . \
 && mkdir -p /app/var /data \
 && chown -R app:app /app/var /app/staticfiles /data

USER app
EXPOSE 8000

# /healthz answers 200 only when the database and the cache answer. It is exempt from the HTTPS
# redirect, so a plain-HTTP probe inside the container works (with a Host from ALLOWED_HOSTS).
HEALTHCHECK --interval=15s --timeout=5s --start-period=20s --retries=3 \
  CMD ["python", "scripts/healthcheck.py"]

CMD ["gunicorn", "-c", "gunicorn.conf.py", "appserver.wsgi"]

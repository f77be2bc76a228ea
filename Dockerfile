# Trilho's production image: gunicorn serves the app (whitenoise serves static files),
# the same image runs the Celery worker and beat (see docker-compose.yml).
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PYTHONPATH=/app \
    DJANGO_SETTINGS_MODULE=orchestrator.settings \
    TRILHO_DATA_DIR=/data \
    STATIC_ROOT=/app/staticfiles

WORKDIR /app

# Dependencies first, so code changes rebuild only the layers below.
# The anthropic extra lets ANTHROPIC_API_KEY work without rebuilding.
COPY pyproject.toml README.md LICENSE ./
RUN pip install ".[anthropic]"

COPY . .

# Static files are collected into the image; the key is a throwaway used only for this step.
RUN SECRET_KEY=collectstatic-only-not-a-secret DEBUG=false TRILHO_DATA_DIR=/tmp/build-data \
    python manage.py collectstatic --noinput --verbosity 0 \
    && rm -rf /tmp/build-data

# Uploaded files and the embedded broker folders live in /data (a volume in compose).
RUN useradd --create-home --uid 1000 --user-group trilho \
    && mkdir -p /data \
    && chown trilho:trilho /data
USER trilho
VOLUME ["/data"]

EXPOSE 8000
CMD ["gunicorn", "orchestrator.wsgi", "--bind", "0.0.0.0:8000", "--access-logfile", "-"]

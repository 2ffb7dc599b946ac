FROM python:3.11-slim
WORKDIR /app
COPY pyproject.toml README.md alembic.ini ./
COPY kalshibook ./kalshibook
COPY migrations ./migrations
RUN pip install --no-cache-dir -e . && useradd --system --home /var/lib/kalshibook kalshibook \
    && mkdir -p /var/lib/kalshibook && chown kalshibook /var/lib/kalshibook
USER kalshibook
ENV PYTHONUNBUFFERED=1
CMD ["kalshibook", "--help"]

# Even server image. Keys and configuration are mounted at run time, never baked in:
#   docker run -v /etc/even:/config:ro -p 8080:8080 even serve --config /config/even.yaml --host 0.0.0.0
FROM python:3.11-slim

WORKDIR /app
COPY pyproject.toml constraints.txt README.md ./
COPY even ./even
COPY audit ./audit
COPY piu ./piu
COPY odd ./odd
RUN pip install --no-cache-dir -c constraints.txt . \
 && useradd --system --uid 10001 --home-dir /nonexistent --shell /usr/sbin/nologin even

USER 10001:10001
EXPOSE 8080
ENTRYPOINT ["even"]
CMD ["serve", "--config", "/config/even.yaml", "--host", "0.0.0.0", "--port", "8080"]

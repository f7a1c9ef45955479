# The image compose.yaml runs: giftrec from the lock (requirements/main.txt), Python 3.11 on Debian.
FROM python:3.11-slim-bookworm
WORKDIR /app
COPY requirements/main.txt requirements/main.txt
RUN pip install --no-cache-dir -r requirements/main.txt
COPY . .
RUN pip install --no-cache-dir --no-deps -e .
ENV GIFTREC_SERVER_INSTANCE_DIR=/app/instance
EXPOSE 8000

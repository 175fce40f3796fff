# Test stand-in for the PyTorch base image docker/Dockerfile names (no registry is reachable
# here): Debian's Python 3.11 in a virtual environment at /opt/conda, where the upstream image
# keeps its Python, with the torch and torchvision that constraints.txt pins, installed by pip.
# The host's CA certificates and local wheel indexes reach pip at build time only; none of this
# is in the project's Dockerfile.
FROM hpsearch-standin/debian:bookworm
COPY host-ca.crt /etc/ssl/certs/host-ca.crt
RUN printf '[global]\ncert = /etc/ssl/certs/host-ca.crt\n' > /etc/pip.conf \
    && apt-get update \
    && apt-get install -y --no-install-recommends python3 python3-venv \
    && rm -rf /var/lib/apt/lists/* \
    && python3 -m venv /opt/conda
ENV PATH=/opt/conda/bin:$PATH
ARG PIP_INDEXES=""
ARG TORCH
ARG TORCHVISION
RUN pip install --no-cache-dir $PIP_INDEXES "torch==$TORCH" "torchvision==$TORCHVISION"
WORKDIR /workspace

# The OperatorHub bundle image. Build from this directory:
#   docker build -f bundle.Dockerfile -t REGISTRY/sluice-bundle:0.1.0 .
# The labels repeat metadata/annotations.yaml (tests/install checks that they agree).
FROM scratch

LABEL operators.operatorframework.io.bundle.mediatype.v1=registry+v1
LABEL operators.operatorframework.io.bundle.manifests.v1=manifests/
LABEL operators.operatorframework.io.bundle.metadata.v1=metadata/
LABEL operators.operatorframework.io.bundle.package.v1=sluice
LABEL operators.operatorframework.io.bundle.channels.v1=candidate
LABEL operators.operatorframework.io.bundle.channel.default.v1=candidate

COPY manifests /manifests/
COPY metadata /metadata/

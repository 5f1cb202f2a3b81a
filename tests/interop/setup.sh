#!/usr/bin/env bash
# Install the Nacos SDKs the interop tests drive, each in its own place under
# .interop/ of this checkout (tests/_interop.py finds them there). CI runs it
# before the README's test command. The Go SDK needs Go (and its module proxy),
# the Java one a JDK 17+ and Maven (and Maven Central); the Rust one comes as
# a binary wheel of its Python binding (PyPI), never compiled here.
set -euo pipefail
cd "$(dirname "$0")/../.."
python3 -m venv .interop/python
.interop/python/bin/pip install -q -r tests/interop/python-requirements.txt
echo "interop: nacos-sdk-python in .interop/python"
python3 -m venv .interop/pythonv1
.interop/pythonv1/bin/pip install -q -r tests/interop/python-v1-requirements.txt
echo "interop: nacos-sdk-python 1.0 (the v1 HTTP client) in .interop/pythonv1"
python3 -m venv .interop/rust
.interop/rust/bin/pip install -q --only-binary=:all: -r tests/interop/rust-requirements.txt
echo "interop: nacos-sdk-rust (nacos-sdk-rust-binding-py) in .interop/rust"
mkdir -p .interop/go
(cd tests/interop/go && go build -o ../../../.interop/go/driver .)
echo "interop: nacos-sdk-go driver in .interop/go/driver"
# One driver source, one jar per client version (each built in
# target/nacos-VERSION/ of tests/interop/java).
mkdir -p .interop/java .interop/java3
(cd tests/interop/java && mvn -q -B package -DskipTests -Dnacos.version=2.5.1 \
    && cp target/nacos-2.5.1/driver.jar ../../../.interop/java/driver.jar)
echo "interop: nacos-client 2.5.1 (Java) driver in .interop/java/driver.jar"
(cd tests/interop/java && mvn -q -B package -DskipTests -Dnacos.version=3.1.1 \
    && cp target/nacos-3.1.1/driver.jar ../../../.interop/java3/driver.jar)
echo "interop: nacos-client 3.1.1 (Java) driver in .interop/java3/driver.jar"

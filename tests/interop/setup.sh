#!/usr/bin/env bash
# Install the Nacos SDKs the interop tests drive, each in its own place under
# .interop/ of this checkout (tests/_interop.py finds them there). CI runs it
# before the README's test command. The Go SDK needs Go (and its module proxy),
# the Java one a JDK 17+ and Maven (and Maven Central).
set -euo pipefail
cd "$(dirname "$0")/../.."
python3 -m venv .interop/python
.interop/python/bin/pip install -q -r tests/interop/python-requirements.txt
echo "interop: nacos-sdk-python in .interop/python"
mkdir -p .interop/go
(cd tests/interop/go && go build -o ../../../.interop/go/driver .)
echo "interop: nacos-sdk-go driver in .interop/go/driver"
mkdir -p .interop/java
(cd tests/interop/java && mvn -q -B package -DskipTests && cp target/driver.jar ../../../.interop/java/driver.jar)
echo "interop: nacos-client (Java) driver in .interop/java/driver.jar"

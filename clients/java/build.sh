#!/usr/bin/env bash
# Builds and runs the Java hub client with javac and java against the jars
# Debian installs under /usr/share/java (Maven Central is not needed):
#
#   clients/java/build.sh build           compile src/main, examples and src/test into build/
#   clients/java/build.sh test            build, then run the JUnit 4 tests (PASSERELLE_BIN: the passerelle binary)
#   clients/java/build.sh demo [FLAGS]    build, then run examples/GatewayDemo.java
#   clients/java/build.sh run-tests       run the tests of the last build
#   clients/java/build.sh run-demo [FLAGS]  run the demo of the last build
#   clients/java/build.sh classpath       print the runtime classpath (run with
#                                         -Djava.library.path=clients/java/build/native for TLS)
#
# The Debian packages (bookworm): libprotobuf-java libgrpc-java libnetty-java
# libgoogle-gson-java libperfmark-java libguava-java liberror-prone-java
# libjsr305-java libgeronimo-annotation-1.3-spec-java, and junit4 for the
# tests; for TLS, libnetty-tcnative-java and libnetty-tcnative-jni (see
# below). pom.xml names the same versions for a Maven build.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
jars=/usr/share/java
# libgrpc-java's grpc-netty needs these at run time, though the package does
# not depend on them all (Debian bug: it depends on libopencensus-java only).
runtime=(protobuf grpc-api grpc-context grpc-core grpc-netty grpc-protobuf grpc-protobuf-lite grpc-stub
  guava error_prone_annotations jsr305 perfmark-api gson
  netty-buffer netty-codec netty-codec-http netty-codec-http2 netty-codec-socks netty-common
  netty-handler netty-handler-proxy netty-resolver netty-transport netty-transport-native-unix-common)
compile_only=(geronimo-annotation-1.3-spec) # javax.annotation.Generated, on the generated stubs
# TLS: gRPC needs ALPN, which Debian's netty-handler has without its JDK
# provider (JdkAlpnApplicationProtocolNegotiator is left out), so TLS goes
# through OpenSSL with netty-tcnative. Netty looks for the JNI library as
# libnetty_tcnative.so, which Debian names libnetty-tcnative.so, and
# tcnative refuses a symbolic link: the build copies it to build/native/.
tcnative_jni=/usr/lib/x86_64-linux-gnu/jni/libnetty-tcnative.so
if [[ -f "$jars/netty-tcnative.jar" && -f "$tcnative_jni" ]]; then runtime+=(netty-tcnative); fi
test_only=(junit4 hamcrest-core)

path_of() {
  local out="" j
  for j in "$@"; do
    [[ -f "$jars/$j.jar" ]] || { echo "build.sh: $jars/$j.jar is missing: apt-get install the packages named at the top of $0" >&2; exit 1; }
    out+="${out:+:}$jars/$j.jar"
  done
  printf '%s' "$out"
}

build() {
  local cp; cp="$(path_of "${runtime[@]}" "${compile_only[@]}")"
  rm -rf "$here/build"
  mkdir -p "$here/build"/{classes,examples,test-classes}
  if [[ -f "$tcnative_jni" ]]; then mkdir -p "$here/build/native" && cp "$tcnative_jni" "$here/build/native/libnetty_tcnative.so"; fi
  find "$here/src/main/java" -name '*.java' >"$here/build/main.txt"
  javac -nowarn -encoding UTF-8 --release 17 -d "$here/build/classes" -cp "$cp" @"$here/build/main.txt"
  javac -encoding UTF-8 --release 17 -Xlint:all -Werror -d "$here/build/examples" -cp "$cp:$here/build/classes" \
    "$here"/examples/*.java
  find "$here/src/test/java" -name '*.java' >"$here/build/test.txt"
  javac -encoding UTF-8 --release 17 -Xlint:all -Werror -d "$here/build/test-classes" \
    -cp "$cp:$(path_of "${test_only[@]}"):$here/build/classes" @"$here/build/test.txt"
}

runtime_cp() { printf '%s:%s' "$(path_of "${runtime[@]}")" "$here/build/classes"; }
native=(-Djava.library.path="$here/build/native")

run_tests() {
  local tests
  tests=$(cd "$here/build/test-classes" && find . -name '*Test.class' | sed 's#^\./##; s#\.class$##; s#/#.#g')
  # shellcheck disable=SC2086
  exec java "${native[@]}" -cp "$(runtime_cp):$(path_of "${test_only[@]}"):$here/build/test-classes" org.junit.runner.JUnitCore $tests
}

run_demo() { exec java "${native[@]}" -cp "$(runtime_cp):$here/build/examples" GatewayDemo "$@"; }

case "${1:-build}" in
  build) build ;;
  test) build; run_tests ;;
  run-tests) run_tests ;;
  demo) shift; build; run_demo "$@" ;;
  run-demo) shift; run_demo "$@" ;;
  classpath) runtime_cp; echo ;;
  *) echo "usage: $0 build|test|demo [FLAGS]|run-tests|run-demo [FLAGS]|classpath" >&2; exit 2 ;;
esac

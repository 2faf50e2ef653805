package io.github.passerelleiot.hub;

import java.io.File;
import java.io.IOException;
import java.net.InetAddress;
import java.net.ServerSocket;
import java.net.URI;
import java.net.http.HttpClient;
import java.net.http.HttpRequest;
import java.net.http.HttpResponse;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.time.Duration;
import java.util.Comparator;
import java.util.concurrent.Callable;
import java.util.concurrent.TimeUnit;
import java.util.stream.Stream;

/**
 * A real {@code passerelle serve} for the tests: its own data folder and free ports on 127.0.0.1,
 * started, restarted on the same ports and stopped. The binary is $PASSERELLE_BIN
 * (scripts/clients.sh builds it), else the repository's bin/passerelle (make build). {@link
 * TLSHub} runs cmd/hub ($PASSERELLE_HUB_BIN, else bin/hub) over TLS beside it.
 */
final class Serve {
  final Path dir;
  final Path dataDir;
  final Path log;
  final String adminAddr;
  final String hubAddr;
  final String mqttAddr;
  String token = "";
  private final String binary;
  private Process proc;

  Serve() throws IOException {
    String bin = System.getenv("PASSERELLE_BIN");
    binary = bin != null && !bin.isEmpty() ? bin : repo().resolve("bin").resolve("passerelle").toString();
    if (!new File(binary).canExecute()) {
      throw new IllegalStateException("no passerelle binary at " + binary + ": run make build, or set PASSERELLE_BIN");
    }
    dir = Files.createTempDirectory("passerelle-java-");
    dataDir = dir.resolve("data");
    log = dir.resolve("serve.log");
    adminAddr = "127.0.0.1:" + freePort();
    hubAddr = "127.0.0.1:" + freePort();
    mqttAddr = "127.0.0.1:" + freePort();
  }

  /** The repository's root: the folder above the working one that has go.mod. */
  private static Path repo() {
    Path start = Path.of(System.getProperty("user.dir")).toAbsolutePath();
    for (Path p = start; p != null; p = p.getParent()) {
      if (Files.exists(p.resolve("go.mod"))) {
        return p;
      }
    }
    return start;
  }

  private static int freePort() throws IOException {
    try (ServerSocket s = new ServerSocket(0, 1, InetAddress.getLoopbackAddress())) {
      return s.getLocalPort();
    }
  }

  /** Poll condition until it returns true. */
  static void waitFor(String what, Callable<Boolean> condition) throws Exception {
    long end = System.nanoTime() + TimeUnit.SECONDS.toNanos(30);
    while (!condition.call()) {
      if (System.nanoTime() > end) {
        throw new AssertionError("timed out after 30 s waiting for " + what);
      }
      Thread.sleep(50);
    }
  }

  void start() throws Exception {
    long from = Files.exists(log) ? Files.size(log) : 0;
    proc = new ProcessBuilder(binary, "serve", "--data-dir", dataDir.toString(), "--admin-addr", adminAddr,
            "--hub-addr", hubAddr, "--mqtt-addr", mqttAddr)
        .directory(dir.toFile())
        .redirectErrorStream(true)
        .redirectOutput(ProcessBuilder.Redirect.appendTo(log.toFile()))
        .redirectInput(ProcessBuilder.Redirect.from(new File("/dev/null")))
        .start();
    waitFor("passerelle serve to be ready", () -> {
      if (!proc.isAlive()) {
        throw new IllegalStateException("passerelle serve exited with " + proc.exitValue() + ":\n" + tail());
      }
      String text = Files.readString(log, StandardCharsets.UTF_8);
      return text.substring((int) Math.min(from, text.length())).contains("Passerelle is ready");
    });
    token = Files.readString(dataDir.resolve("admin.token")).strip();
  }

  /** Stop with SIGINT, as Ctrl-C would, and wait for the exit. */
  void stop() throws Exception {
    if (proc == null || !proc.isAlive()) {
      return;
    }
    new ProcessBuilder("kill", "-INT", Long.toString(proc.pid())).inheritIO().start().waitFor();
    if (!proc.waitFor(30, TimeUnit.SECONDS)) {
      proc.destroyForcibly().waitFor();
      throw new IllegalStateException("passerelle serve still running 30 s after SIGINT");
    }
    if (proc.exitValue() != 0) {
      throw new IllegalStateException("passerelle serve exited with " + proc.exitValue() + ":\n" + tail());
    }
  }

  void restart() throws Exception {
    stop();
    start();
  }

  void close() throws Exception {
    try {
      stop();
    } finally {
      try (Stream<Path> files = Files.walk(dir)) {
        files.sorted(Comparator.reverseOrder()).map(Path::toFile).forEach(File::delete);
      }
    }
  }

  String tail() throws IOException {
    String text = Files.readString(log, StandardCharsets.UTF_8);
    return text.substring(Math.max(0, text.length() - 4000));
  }

  /** Call the admin API's REST v1 (path after /v1/) with a JSON body, or none. */
  String admin(String method, String path, String json) throws Exception {
    HttpRequest req = HttpRequest.newBuilder(URI.create("http://" + adminAddr + "/v1/" + path))
        .timeout(Duration.ofSeconds(30))
        .header("authorization", "Bearer " + token)
        .header("content-type", "application/json")
        .method(method, json == null ? HttpRequest.BodyPublishers.noBody() : HttpRequest.BodyPublishers.ofString(json))
        .build();
    HttpResponse<String> resp = HttpClient.newHttpClient().send(req, HttpResponse.BodyHandlers.ofString());
    if (resp.statusCode() / 100 != 2) {
      throw new AssertionError(method + " " + path + ": HTTP " + resp.statusCode() + ": " + resp.body());
    }
    return resp.body();
  }

  /**
   * cmd/hub serving TLS with serve's certificate for 127.0.0.1 (signed by its ca.pem) and taking
   * serve's tokens, against serve's bridge and admin API.
   */
  final class TLSHub {
    final String addr;
    final File ca = dataDir.resolve("ca.pem").toFile();
    private final Process hub;

    TLSHub() throws Exception {
      String bin = System.getenv("PASSERELLE_HUB_BIN");
      String binary = bin != null && !bin.isEmpty() ? bin : repo().resolve("bin").resolve("hub").toString();
      if (!new File(binary).canExecute()) {
        throw new IllegalStateException("no hub binary at " + binary + ": run make build, or set PASSERELLE_HUB_BIN");
      }
      addr = "127.0.0.1:" + freePort();
      Path hubLog = dir.resolve("tls-hub.log");
      hub = new ProcessBuilder(binary, "--listen", addr,
              "--tls-cert", dataDir.resolve("bridge.pem").toString(), "--tls-key", dataDir.resolve("bridge.key").toString(),
              "--tokens-file", dataDir.resolve("tokens").toString(), "--bridge", mqttAddr, "--bridge-ca", ca.toString(),
              "--manager-url", "http://" + adminAddr, "--manager-token-file", dataDir.resolve("admin.token").toString(),
              "--data-dir", dir.resolve("tls-hub").toString())
          .redirectErrorStream(true)
          .redirectOutput(hubLog.toFile())
          .redirectInput(ProcessBuilder.Redirect.from(new File("/dev/null")))
          .start();
      waitFor("cmd/hub to serve", () -> {
        String text = Files.readString(hubLog, StandardCharsets.UTF_8);
        if (!hub.isAlive()) {
          throw new IllegalStateException("cmd/hub exited with " + hub.exitValue() + ":\n" + text);
        }
        return text.contains("hub serving");
      });
    }

    void close() throws Exception {
      new ProcessBuilder("kill", "-INT", Long.toString(hub.pid())).inheritIO().start().waitFor();
      if (!hub.waitFor(30, TimeUnit.SECONDS)) {
        hub.destroyForcibly().waitFor();
      }
    }
  }
}

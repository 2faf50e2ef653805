import com.google.gson.Gson;
import com.google.gson.JsonElement;
import com.google.gson.JsonNull;
import com.google.gson.JsonObject;
import com.google.gson.JsonParser;
import com.google.protobuf.ByteString;
import io.github.passerelleiot.hub.HubChannels;
import io.github.passerelleiot.hub.v1.Algorithm;
import io.github.passerelleiot.hub.v1.AttachRequest;
import io.github.passerelleiot.hub.v1.AttachResponse;
import io.github.passerelleiot.hub.v1.CreateGatewayRequest;
import io.github.passerelleiot.hub.v1.GatewayAuthMethod;
import io.github.passerelleiot.hub.v1.HubGrpc;
import io.github.passerelleiot.hub.v1.PublishStateRequest;
import io.github.passerelleiot.hub.v1.PublishStateResponse;
import io.github.passerelleiot.hub.v1.SubscribeConfigRequest;
import io.github.passerelleiot.hub.v1.SubscribeConfigResponse;
import io.grpc.Context;
import io.grpc.ManagedChannel;
import io.grpc.Status;
import io.grpc.StatusRuntimeException;
import io.grpc.stub.ClientCallStreamObserver;
import io.grpc.stub.ClientResponseObserver;
import io.grpc.stub.StreamObserver;
import java.io.BufferedReader;
import java.io.File;
import java.io.IOException;
import java.io.InputStreamReader;
import java.io.PrintWriter;
import java.net.URI;
import java.net.http.HttpClient;
import java.net.http.HttpRequest;
import java.net.http.HttpResponse;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.time.Duration;
import java.time.Instant;
import java.util.ArrayList;
import java.util.Base64;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.TreeMap;
import java.util.concurrent.BlockingQueue;
import java.util.concurrent.CompletableFuture;
import java.util.concurrent.LinkedBlockingQueue;
import java.util.concurrent.TimeUnit;
import java.util.regex.Matcher;
import java.util.regex.Pattern;

/**
 * The gateway demo of the Cloud IoT Core documentation, on Passerelle's hub.
 *
 * <p>It does what cmd/hubdemo does, with the same output lines: creates a registry with a Pub/Sub
 * topic, a gateway through the hub's CreateGateway (the hub keeps its key) and a device; attaches
 * the device through the hub with create_if_missing and bind_if_needed, which binds it;
 * subscribes to the configs of the device and of the gateway, printing each and logging it to a
 * CSV file; publishes 15 states on the device's behalf, each acknowledged; shows where to read
 * them; waits for enter ("Press enter to clean up"); and cleans up.
 *
 * <pre>
 * clients/java/build.sh demo [--admin-addr 127.0.0.1:8080] [--hub-addr 127.0.0.1:8090]
 *     [--data-dir ./passerelle-data] [--token TOKEN] [--yes] [--set-config DATA]
 *     [--listen 30s] [--config-log &lt;data-dir&gt;/config_log.csv]
 * </pre>
 *
 * <p>Every flag is also an environment variable, PASSERELLE_&lt;FLAG&gt; (PASSERELLE_HUB_ADDR);
 * flags win. The admin API (registries, devices) is called over REST with java.net.http; the hub
 * with the generated grpc-java stubs.
 */
public final class GatewayDemo {
  /** The demo's settings, from flags and PASSERELLE_* variables. */
  static final class Config {
    final Map<String, String> values = new LinkedHashMap<>();

    Config() {
      values.put("admin-addr", "127.0.0.1:8080");
      values.put("hub-addr", "127.0.0.1:8090");
      values.put("data-dir", "./passerelle-data");
      values.put("token", "");
      values.put("hub-ca", "");
      values.put("yes", "false");
      values.put("set-config", "");
      values.put("listen", "30s");
      values.put("project", "passerelle-demo");
      values.put("region", "us-central1");
      values.put("config-log", "");
      values.put("states", "15");
      values.put("state-interval", "1s");
      for (String name : values.keySet()) {
        String v = System.getenv("PASSERELLE_" + name.toUpperCase().replace('-', '_'));
        if (v != null) {
          values.put(name, v);
        }
      }
    }

    void parse(String[] args) {
      for (int i = 0; i < args.length; i++) {
        String a = args[i];
        if (!a.startsWith("--")) {
          throw new IllegalArgumentException("unexpected argument " + a);
        }
        String name = a.replaceFirst("^--?", "");
        String value = null;
        int eq = name.indexOf('=');
        if (eq >= 0) {
          value = name.substring(eq + 1);
          name = name.substring(0, eq);
        }
        if (name.equals("help") || name.equals("h")) {
          System.out.println("usage: GatewayDemo " + String.join(" ", values.keySet().stream().map(n -> "[--" + n + "]").toList())
              + "  (each also PASSERELLE_<FLAG>)");
          System.exit(0);
        }
        if (!values.containsKey(name)) {
          throw new IllegalArgumentException("unknown flag --" + name);
        }
        if (value == null) {
          if (name.equals("yes")) {
            value = "true";
          } else if (i + 1 < args.length) {
            value = args[++i];
          } else {
            throw new IllegalArgumentException("flag --" + name + " needs a value");
          }
        }
        values.put(name, value);
      }
      if (get("config-log").isEmpty()) {
        values.put("config-log", Path.of(get("data-dir"), "config_log.csv").toString());
      }
    }

    String get(String name) {
      return values.get(name);
    }

    boolean yes() {
      return get("yes").equals("true") || get("yes").equals("1");
    }
  }

  /** Parse a Go-style duration (30s, 1m30s, 500ms). */
  static Duration duration(String text) {
    Matcher m = Pattern.compile("(\\d+(?:\\.\\d+)?)(ms|s|m|h)").matcher(text);
    StringBuilder seen = new StringBuilder();
    double ms = 0;
    while (m.find()) {
      seen.append(m.group());
      double n = Double.parseDouble(m.group(1));
      ms += switch (m.group(2)) {
        case "ms" -> n;
        case "s" -> n * 1000;
        case "m" -> n * 60_000;
        default -> n * 3_600_000;
      };
    }
    if (seen.length() == 0 || !seen.toString().equals(text)) {
      throw new IllegalArgumentException("invalid duration \"" + text + "\" (for example 30s, 1m, 500ms)");
    }
    return Duration.ofMillis(Math.round(ms));
  }

  /** Render a duration as Go's time.Duration prints it (5s, 1m0s, 500ms). */
  static String goDuration(Duration d) {
    long ms = d.toMillis();
    if (ms < 1000) {
      return ms + "ms";
    }
    long h = ms / 3_600_000;
    long m = (ms % 3_600_000) / 60_000;
    double s = (ms % 60_000) / 1000.0;
    String secs = s == Math.floor(s) ? String.valueOf((long) s) : String.valueOf(s);
    return (h > 0 ? h + "h" : "") + (h > 0 || m > 0 ? m + "m" : "") + secs + "s";
  }

  /** A failed admin API call: its HTTP status and the server's message. */
  static final class AdminException extends Exception {
    private static final long serialVersionUID = 1L;

    AdminException(String message) {
      super(message);
    }
  }

  /** The admin API's REST v1, with java.net.http. */
  static final class Admin {
    private final HttpClient http = HttpClient.newBuilder().connectTimeout(Duration.ofSeconds(10)).build();
    private final String base;
    private final String token;

    Admin(String addr, String token) {
      this.base = "http://" + addr + "/v1/";
      this.token = token;
    }

    JsonObject call(String method, String path, Object body) throws AdminException, IOException, InterruptedException {
      HttpRequest.BodyPublisher publisher = body == null
          ? HttpRequest.BodyPublishers.noBody()
          : HttpRequest.BodyPublishers.ofString(new Gson().toJson(body));
      HttpRequest req = HttpRequest.newBuilder(URI.create(base + path))
          .timeout(Duration.ofSeconds(30))
          .header("authorization", "Bearer " + token)
          .header("content-type", "application/json")
          .method(method, publisher)
          .build();
      HttpResponse<String> resp = http.send(req, HttpResponse.BodyHandlers.ofString());
      String text = resp.body();
      if (resp.statusCode() / 100 != 2) {
        String message = text.strip();
        try {
          message = JsonParser.parseString(text).getAsJsonObject().getAsJsonObject("error").get("message").getAsString();
        } catch (RuntimeException notJson) {
          // the body as it is
        }
        throw new AdminException(method + " " + path + ": HTTP " + resp.statusCode() + ": " + message);
      }
      return text.isBlank() ? new JsonObject() : JsonParser.parseString(text).getAsJsonObject();
    }
  }

  /** JSON with its object keys sorted, as Go renders a map. */
  static JsonElement sorted(JsonElement e) {
    if (e == null) {
      return JsonNull.INSTANCE;
    }
    if (e.isJsonObject()) {
      TreeMap<String, JsonElement> keys = new TreeMap<>();
      e.getAsJsonObject().entrySet().forEach(en -> keys.put(en.getKey(), sorted(en.getValue())));
      JsonObject o = new JsonObject();
      keys.forEach(o::add);
      return o;
    }
    return e;
  }

  /** A device as the sample prints it: its id, numId, config and gateway config. */
  static String brief(JsonObject d) {
    JsonObject o = new JsonObject();
    for (String k : List.of("config", "gatewayConfig", "id", "numId")) {
      o.add(k, sorted(d.get(k)));
    }
    return new Gson().newBuilder().serializeNulls().create().toJson(o);
  }

  private final Config cfg;
  private final Admin admin;
  private final ManagedChannel channel;
  private final HubGrpc.HubStub hub;
  private final BufferedReader stdin = new BufferedReader(new InputStreamReader(System.in, StandardCharsets.UTF_8));

  GatewayDemo(Config cfg) throws IOException {
    this.cfg = cfg;
    this.admin = new Admin(cfg.get("admin-addr"), cfg.get("token"));
    this.channel = cfg.get("hub-ca").isEmpty()
        ? HubChannels.plaintext(cfg.get("hub-addr"), cfg.get("token"))
        : HubChannels.tls(cfg.get("hub-addr"), cfg.get("token"), new File(cfg.get("hub-ca")));
    this.hub = HubGrpc.newStub(channel);
  }

  static void say(String text) {
    System.out.println(text);
    System.out.flush();
  }

  void pause(String prompt) throws IOException {
    if (cfg.yes()) {
      return;
    }
    say(prompt);
    stdin.readLine();
  }

  void run() throws Exception {
    String registryId = "test-registry-" + Instant.now().getEpochSecond();
    String gatewayId = "test-device-RS256";
    String deviceId = "test-device-noauthbind";
    String parent = "projects/" + cfg.get("project") + "/locations/" + cfg.get("region");
    String registry = parent + "/registries/" + registryId;
    String gateway = registry + "/devices/" + gatewayId;
    String device = registry + "/devices/" + deviceId;

    say("Running demo\n");
    say("Creating registry: " + registryId);
    admin.call("POST", parent + "/registries", Map.of(
        "id", registryId,
        "eventNotificationConfigs", List.of(Map.of("pubsubTopicName", "projects/" + cfg.get("project") + "/topics/gateway-demo"))));
    say("Created registry\n");
    Context.CancellableContext attach = Context.current().withCancellation();
    try {
      say("Creating gateway: " + gatewayId);
      HubGrpc.newBlockingStub(channel).withDeadlineAfter(30, TimeUnit.SECONDS).createGateway(CreateGatewayRequest.newBuilder()
          .setParent(registry).setGatewayId(gatewayId).setAlgorithm(Algorithm.ALGORITHM_RS256)
          .setGatewayAuthMethod(GatewayAuthMethod.GATEWAY_AUTH_METHOD_ASSOCIATION_ONLY).build());
      say("Created gateway " + brief(admin.call("GET", gateway, null)));
      say("Creating device to bind: " + deviceId);
      JsonObject dev = admin.call("POST", registry + "/devices", Map.of(
          "id", deviceId,
          "gatewayConfig", Map.of("gatewayType", "NON_GATEWAY", "gatewayAuthMethod", "ASSOCIATION_ONLY")));
      say("Created Device " + brief(dev) + "\n");

      say("Binding device");
      attach(attach, gateway, deviceId);
      say("Device Bound!");

      listen(gateway, device, gatewayId, deviceId);
      publish(registryId, gateway, device, gatewayId, deviceId);
      // Time to read the states before they go with the device.
      pause("Press enter to clean up");
    } finally {
      attach.cancel(null);
      cleanup(registry, registryId, gateway, device, gatewayId, deviceId);
    }
  }

  /**
   * Attach the device through the hub, creating and binding it as needed; it stays attached
   * until ctx is cancelled. Returns once attached.
   */
  void attach(Context.CancellableContext ctx, String gateway, String deviceId) throws Exception {
    CompletableFuture<AttachResponse> first = new CompletableFuture<>();
    StreamObserver<AttachResponse> responses = new StreamObserver<>() {
      @Override
      public void onNext(AttachResponse r) {
        if (!first.complete(r) && r.hasError()) {
          say("Gateway error " + r.getError().getErrorType() + " for " + r.getError().getDeviceId() + ": "
              + r.getError().getDescription());
        }
      }

      @Override
      public void onError(Throwable t) {
        first.completeExceptionally(t);
      }

      @Override
      public void onCompleted() {
        first.completeExceptionally(new IllegalStateException("Attach: the stream ended before attached"));
      }
    };
    // The request stream stays open (no onCompleted): the device stays attached.
    StreamObserver<AttachRequest> requests = ctx.call(() -> hub.attach(responses));
    requests.onNext(AttachRequest.newBuilder().setGateway(gateway).setDeviceId(deviceId)
        .setCreateIfMissing(true).setBindIfNeeded(true).build());
    AttachResponse r = unwrap(() -> first.get(30, TimeUnit.SECONDS));
    if (!r.hasAttached()) {
      throw new IllegalStateException("Attach: the first response is " + r.getEventCase() + ", not attached");
    }
  }

  void listen(String gateway, String device, String gatewayId, String deviceId) throws Exception {
    Duration listen = duration(cfg.get("listen"));
    say("Listening for messages for " + goDuration(listen));
    say("Try setting configuration with:");
    String tokenFile = Path.of(cfg.get("data-dir"), "admin.token").toString();
    say("  grpcurl -plaintext -H \"authorization: Bearer $(cat " + tokenFile + ")\" -d '{\"name\": \"" + device
        + "\", \"binaryData\": \"ZGV2aWNlLWNvbmZpZw==\"}' " + cfg.get("admin-addr")
        + " google.cloud.iot.v1.DeviceManager/ModifyCloudToDeviceConfig");
    pause("Press enter to continue");

    Path logPath = Path.of(cfg.get("config-log")).toAbsolutePath();
    Files.createDirectories(logPath.getParent());
    try (PrintWriter log = new PrintWriter(Files.newBufferedWriter(logPath, StandardCharsets.UTF_8))) {
      say("Logging config messages to " + cfg.get("config-log"));
      log.println("time,topic,data");
      say("Attaching: /devices/" + deviceId + "/attach");
      say("Waiting for device to attach.");
      // A message is a String[]{topic, data}; a failed stream puts its Throwable.
      BlockingQueue<Object> messages = new LinkedBlockingQueue<>();
      Context.CancellableContext streams = Context.current().withCancellation();
      try {
        for (String[] target : List.of(new String[] {deviceId, deviceId}, new String[] {gatewayId, ""})) {
          String topic = "/devices/" + target[0] + "/config";
          streams.run(() -> hub.subscribeConfig(
              SubscribeConfigRequest.newBuilder().setGateway(gateway).setDeviceId(target[1]).build(),
              new StreamObserver<SubscribeConfigResponse>() {
                @Override
                public void onNext(SubscribeConfigResponse c) {
                  messages.add(new String[] {topic, c.getData().toStringUtf8()});
                }

                @Override
                public void onError(Throwable t) {
                  messages.add(t);
                }

                @Override
                public void onCompleted() {}
              }));
        }
        boolean setDone = cfg.get("set-config").isEmpty();
        // The window is timed here, not by a stream deadline (the hub could report an expired
        // deadline first, which would look like a failure).
        long end = System.nanoTime() + listen.toNanos();
        for (long left; (left = end - System.nanoTime()) > 0; ) {
          Object m = messages.poll(left, TimeUnit.NANOSECONDS);
          if (m == null) {
            break;
          }
          if (m instanceof Throwable t) {
            throw new IllegalStateException("config stream: " + Status.fromThrowable(t), t);
          }
          String[] msg = (String[]) m;
          say("Received message '" + msg[1] + "' on topic '" + msg[0] + "' with Qos 1");
          log.println(csv(Instant.now().toString(), msg[0], msg[1]));
          log.flush();
          if (!setDone && msg[0].equals("/devices/" + deviceId + "/config")) {
            // The current config arrived: the subscription is live, so a change made now is
            // delivered.
            setDone = true;
            admin.call("POST", device + ":modifyCloudToDeviceConfig", Map.of("binaryData",
                Base64.getEncoder().encodeToString(cfg.get("set-config").getBytes(StandardCharsets.UTF_8))));
          }
        }
      } finally {
        streams.cancel(null);
      }
    }
    say("Detaching: /devices/" + deviceId + "/detach");
    say("Finished.\n");
  }

  static String csv(String... fields) {
    List<String> out = new ArrayList<>();
    for (String f : fields) {
      out.add(f.matches("(?s).*[\",\r\n].*") ? "\"" + f.replace("\"", "\"\"") + "\"" : f);
    }
    return String.join(",", out);
  }

  void publish(String registryId, String gateway, String device, String gatewayId, String deviceId) throws Exception {
    int n = Integer.parseInt(cfg.get("states"));
    Duration every = duration(cfg.get("state-interval"));
    say("Publishing messages demo");
    say("Publishing: " + n + " messages");
    say("Attaching: /devices/" + deviceId + "/attach");
    say("Waiting for device to attach.");
    // One request at a time: the next is sent once the previous is acknowledged (the hub answers
    // each once the bridge PUBACKed it). An ack is a PublishStateResponse; the end of the stream
    // is a Status (OK, or the error).
    BlockingQueue<Object> acks = new LinkedBlockingQueue<>();
    CompletableFuture<ClientCallStreamObserver<PublishStateRequest>> call = new CompletableFuture<>();
    StreamObserver<PublishStateRequest> requests = hub.publishState(
        new ClientResponseObserver<PublishStateRequest, PublishStateResponse>() {
          @Override
          public void beforeStart(ClientCallStreamObserver<PublishStateRequest> requestStream) {
            call.complete(requestStream);
          }

          @Override
          public void onNext(PublishStateResponse ack) {
            acks.add(ack);
          }

          @Override
          public void onError(Throwable t) {
            acks.add(Status.fromThrowable(t));
          }

          @Override
          public void onCompleted() {
            acks.add(Status.OK);
          }
        });
    try {
      for (int i = 1; i <= n; i++) {
        String payload = registryId + "/" + gatewayId + "-" + deviceId + "-payload-" + i;
        say("Publishing message " + i + "/" + n + ": '" + payload + "' to /devices/" + deviceId + "/state");
        requests.onNext(PublishStateRequest.newBuilder().setGateway(gateway).setDeviceId(deviceId)
            .setData(ByteString.copyFromUtf8(payload)).build());
        Object ack = acks.poll(30, TimeUnit.SECONDS);
        if (!(ack instanceof PublishStateResponse)) {
          throw new IllegalStateException("state " + i + " not acknowledged: "
              + (ack == null ? "no answer in 30 s" : ack instanceof Status s && s.isOk() ? "the stream ended" : ack));
        }
        if (i < n) {
          Thread.sleep(every.toMillis());
        }
      }
      requests.onCompleted();
      acks.poll(30, TimeUnit.SECONDS); // the hub ends the stream once it detached
    } finally {
      call.getNow(null).cancel("the demo is done", null); // no-op once the stream has ended
    }
    say("Detaching: /devices/" + deviceId + "/detach");
    say("Finished.\n");

    JsonObject states = admin.call("GET", device + "/states", null);
    say("You can read the state messages for your device with:");
    String tokenFile = Path.of(cfg.get("data-dir"), "admin.token").toString();
    say("    grpcurl -plaintext -H \"authorization: Bearer $(cat " + tokenFile + ")\" -d '{\"name\": \"" + device + "\"}' "
        + cfg.get("admin-addr") + " google.cloud.iot.v1.DeviceManager/ListDeviceStates");
    if (states.has("deviceStates") && states.getAsJsonArray("deviceStates").size() > 0) {
      var list = states.getAsJsonArray("deviceStates");
      String newest = new String(Base64.getDecoder().decode(
          list.get(0).getAsJsonObject().get("binaryData").getAsString()), StandardCharsets.UTF_8);
      say("ListDeviceStates: " + list.size() + " states kept, the newest '" + newest + "'\n");
    }
  }

  /** Clean up whatever happened before, as the sample's finally does. */
  void cleanup(String registry, String registryId, String gateway, String device, String gatewayId, String deviceId) {
    try {
      admin.call("POST", registry + ":unbindDeviceFromGateway", Map.of("gatewayId", gatewayId, "deviceId", deviceId));
      say("Device unbound: {}");
    } catch (Exception notBound) {
      // not bound, or already gone
    }
    for (String name : List.of(device, gateway)) {
      try {
        admin.call("DELETE", name, null);
        say("Delete device");
      } catch (Exception gone) {
        // not created, or already gone
      }
    }
    try {
      admin.call("DELETE", registry, null);
      say("Delete registry");
    } catch (Exception e) {
      say("Could not delete registry " + registryId + ": " + e.getMessage());
    }
  }

  interface Call<T> {
    T get() throws Exception;
  }

  /** Run c, turning an ExecutionException into its cause. */
  static <T> T unwrap(Call<T> c) throws Exception {
    try {
      return c.get();
    } catch (java.util.concurrent.ExecutionException e) {
      throw e.getCause() instanceof Exception ex ? ex : e;
    }
  }

  public static void main(String[] args) throws Exception {
    Config cfg = new Config();
    try {
      cfg.parse(args);
      duration(cfg.get("listen"));
      duration(cfg.get("state-interval"));
    } catch (IllegalArgumentException e) {
      System.err.println("GatewayDemo: " + e.getMessage());
      System.exit(2);
    }
    if (cfg.get("token").isEmpty()) {
      Path path = Path.of(cfg.get("data-dir"), "admin.token");
      try {
        cfg.values.put("token", Files.readString(path).strip());
      } catch (IOException e) {
        System.err.println("GatewayDemo: no admin token: " + e + " (give --token, or --data-dir of the running passerelle serve)");
        System.exit(2);
      }
    }
    GatewayDemo demo = new GatewayDemo(cfg);
    int code = 0;
    try {
      demo.run();
    } catch (StatusRuntimeException e) {
      System.err.println("GatewayDemo: " + e.getStatus().getCode() + ": " + e.getStatus().getDescription());
      code = 1;
    } catch (Exception e) {
      System.err.println("GatewayDemo: " + e.getMessage());
      code = 1;
    } finally {
      demo.channel.shutdownNow().awaitTermination(10, TimeUnit.SECONDS);
    }
    System.exit(code);
  }
}

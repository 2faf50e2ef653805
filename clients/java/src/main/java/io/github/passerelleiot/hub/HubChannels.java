package io.github.passerelleiot.hub;

import io.grpc.ManagedChannel;
import io.grpc.ManagedChannelBuilder;
import io.grpc.Metadata;
import io.grpc.netty.GrpcSslContexts;
import io.grpc.netty.NettyChannelBuilder;
import io.netty.handler.ssl.SslContext;
import io.netty.handler.ssl.SslContextBuilder;
import io.grpc.stub.MetadataUtils;
import java.io.File;
import java.util.List;
import java.util.Map;
import javax.net.ssl.SSLException;

/**
 * Channels to Passerelle's hub ({@code passerelle.hub.v1.Hub}) that send a token with every
 * call and retry as {@link #RETRY_POLICY} says. The generated stubs are in {@code
 * io.github.passerelleiot.hub.v1} ({@code HubGrpc}):
 *
 * <pre>{@code
 * ManagedChannel channel = HubChannels.plaintext("127.0.0.1:8090", token);
 * HubGrpc.HubBlockingStub hub = HubGrpc.newBlockingStub(channel);
 * hub.withDeadlineAfter(10, TimeUnit.SECONDS).listGateways(ListGatewaysRequest.getDefaultInstance());
 * channel.shutdown();
 * }</pre>
 */
public final class HubChannels {
  /** The hub's service name, as gRPC and the service config name it. */
  public static final String SERVICE = "passerelle.hub.v1.Hub";

  /**
   * How a call that fails with UNAVAILABLE (the hub unreachable or restarting, or its gateway
   * connection down) is tried again: up to 5 attempts in all, waiting a random time up to 0.2
   * s, 0.4 s, 0.8 s, 1.6 s between them (gRPC's retry policy). gRPC retries a stream only until
   * its first response; a stream that breaks later ends with UNAVAILABLE and is the caller's to
   * open again. CreateGateway is not retried: a second attempt after a lost answer would report
   * ALREADY_EXISTS. Repeating PublishEvent or PublishState may deliver a payload twice, as MQTT
   * QoS 1 does. The same policy as the Python and TypeScript clients'.
   */
  public static final Map<String, Object> RETRY_POLICY =
      Map.of(
          "maxAttempts", 5.0,
          "initialBackoff", "0.2s",
          "maxBackoff", "5s",
          "backoffMultiplier", 2.0,
          "retryableStatusCodes", List.of("UNAVAILABLE"));

  /** The gRPC service config the channels are given. */
  public static final Map<String, Object> SERVICE_CONFIG =
      Map.of(
          "methodConfig",
          List.of(
              Map.of("name", List.of(Map.of("service", SERVICE)), "retryPolicy", RETRY_POLICY),
              Map.of("name", List.of(Map.of("service", SERVICE, "method", "CreateGateway")))));

  private HubChannels() {}

  /**
   * A plaintext channel to the hub at target ({@code host:port}), as {@code passerelle serve}'s
   * hub is by default. token: sent as {@code authorization: Bearer <token>}; null sends none (a
   * hub started with --insecure-no-auth).
   */
  public static ManagedChannel plaintext(String target, String token) {
    return configure(ManagedChannelBuilder.forTarget(target).usePlaintext(), token).build();
  }

  /**
   * A TLS channel to the hub at target, checking its certificate against the PEM file ca, or
   * the system's roots when ca is null. token as for {@link #plaintext}.
   */
  public static ManagedChannel tls(String target, String token, File ca) throws SSLException {
    SslContextBuilder ssl = GrpcSslContexts.forClient();
    if (ca != null) {
      ssl.trustManager(ca);
    }
    SslContext context;
    try {
      context = ssl.build();
    } catch (UnsupportedOperationException e) {
      // Debian's netty leaves out the JDK's ALPN support, which gRPC needs.
      throw new IllegalStateException(
          "TLS needs ALPN, which this netty lacks for the JDK's TLS: put netty-tcnative on the"
              + " classpath and its JNI library on java.library.path (on Debian: libnetty-tcnative-java"
              + " and libnetty-tcnative-jni, see clients/java/build.sh), or use netty from Maven Central",
          e);
    }
    return configure(NettyChannelBuilder.forTarget(target).sslContext(context), token).build();
  }

  /**
   * Give a channel builder of your own the token and the retry policy (for other options:
   * keepalive, executors, ...).
   */
  public static ManagedChannelBuilder<?> configure(ManagedChannelBuilder<?> builder, String token) {
    builder.defaultServiceConfig(SERVICE_CONFIG).enableRetry();
    if (token != null && !token.isEmpty()) {
      Metadata headers = new Metadata();
      headers.put(
          Metadata.Key.of("authorization", Metadata.ASCII_STRING_MARSHALLER), "Bearer " + token);
      builder.intercept(MetadataUtils.newAttachHeadersInterceptor(headers));
    }
    return builder;
  }
}

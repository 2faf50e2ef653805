package io.github.passerelleiot.hub;

import static org.junit.Assert.assertEquals;
import static org.junit.Assert.assertThrows;

import io.github.passerelleiot.hub.v1.CreateGatewayRequest;
import io.github.passerelleiot.hub.v1.CreateGatewayResponse;
import io.github.passerelleiot.hub.v1.HubGrpc;
import io.github.passerelleiot.hub.v1.ListGatewaysRequest;
import io.github.passerelleiot.hub.v1.ListGatewaysResponse;
import io.github.passerelleiot.hub.v1.PublishEventRequest;
import io.github.passerelleiot.hub.v1.PublishEventResponse;
import io.grpc.ManagedChannel;
import io.grpc.Server;
import io.grpc.Status;
import io.grpc.StatusRuntimeException;
import io.grpc.netty.NettyServerBuilder;
import io.grpc.stub.StreamObserver;
import java.net.InetAddress;
import java.net.InetSocketAddress;
import java.util.Map;
import java.util.concurrent.ConcurrentHashMap;
import java.util.concurrent.TimeUnit;
import org.junit.After;
import org.junit.Test;

/**
 * The retry policy of {@link HubChannels}, against an in-process gRPC server on 127.0.0.1 that
 * fails every call and counts the attempts.
 */
public class RetryPolicyTest {
  /** Fails every call with the code given, counting the calls by method. */
  static final class Failing extends HubGrpc.HubImplBase {
    final Status status;
    final Map<String, Integer> calls = new ConcurrentHashMap<>();

    Failing(Status status) {
      this.status = status;
    }

    private void fail(String method, StreamObserver<?> out) {
      calls.merge(method, 1, Integer::sum);
      out.onError(status.withDescription("try again").asRuntimeException());
    }

    @Override
    public void listGateways(ListGatewaysRequest request, StreamObserver<ListGatewaysResponse> out) {
      fail("ListGateways", out);
    }

    @Override
    public void publishEvent(PublishEventRequest request, StreamObserver<PublishEventResponse> out) {
      fail("PublishEvent", out);
    }

    @Override
    public void createGateway(CreateGatewayRequest request, StreamObserver<CreateGatewayResponse> out) {
      fail("CreateGateway", out);
    }
  }

  private Server server;
  private ManagedChannel channel;

  private HubGrpc.HubBlockingStub serve(Failing hub) throws Exception {
    server = NettyServerBuilder.forAddress(new InetSocketAddress(InetAddress.getLoopbackAddress(), 0))
        .addService(hub).build().start();
    channel = HubChannels.plaintext("127.0.0.1:" + server.getPort(), "t");
    return HubGrpc.newBlockingStub(channel).withDeadlineAfter(30, TimeUnit.SECONDS);
  }

  @After
  public void stop() throws InterruptedException {
    if (channel != null) {
      channel.shutdownNow().awaitTermination(10, TimeUnit.SECONDS);
    }
    if (server != null) {
      server.shutdownNow().awaitTermination(10, TimeUnit.SECONDS);
    }
  }

  @Test
  public void unavailableIsRetried() throws Exception {
    Failing hub = new Failing(Status.UNAVAILABLE);
    HubGrpc.HubBlockingStub stub = serve(hub);
    StatusRuntimeException e = assertThrows(StatusRuntimeException.class,
        () -> stub.listGateways(ListGatewaysRequest.getDefaultInstance()));
    assertEquals(Status.Code.UNAVAILABLE, e.getStatus().getCode());
    assertThrows(StatusRuntimeException.class, () -> stub.publishEvent(PublishEventRequest.getDefaultInstance()));
    int attempts = ((Double) HubChannels.RETRY_POLICY.get("maxAttempts")).intValue();
    assertEquals(attempts, (int) hub.calls.get("ListGateways"));
    assertEquals(attempts, (int) hub.calls.get("PublishEvent"));
  }

  @Test
  public void createGatewayIsNotRetried() throws Exception {
    Failing hub = new Failing(Status.UNAVAILABLE);
    HubGrpc.HubBlockingStub stub = serve(hub);
    assertThrows(StatusRuntimeException.class, () -> stub.createGateway(CreateGatewayRequest.getDefaultInstance()));
    assertEquals(1, (int) hub.calls.get("CreateGateway"));
  }

  @Test
  public void otherCodesAreNotRetried() throws Exception {
    Failing hub = new Failing(Status.FAILED_PRECONDITION);
    HubGrpc.HubBlockingStub stub = serve(hub);
    StatusRuntimeException e = assertThrows(StatusRuntimeException.class,
        () -> stub.listGateways(ListGatewaysRequest.getDefaultInstance()));
    assertEquals(Status.Code.FAILED_PRECONDITION, e.getStatus().getCode());
    assertEquals(1, (int) hub.calls.get("ListGateways"));
  }
}

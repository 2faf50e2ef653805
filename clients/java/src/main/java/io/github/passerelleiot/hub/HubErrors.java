package io.github.passerelleiot.hub;

import com.google.protobuf.Any;
import com.google.protobuf.InvalidProtocolBufferException;
import com.google.rpc.ErrorInfo;
import io.github.passerelleiot.hub.v1.ErrorReason;
import io.grpc.protobuf.StatusProto;

/**
 * The hub's errors as data. Every error status the hub returns carries a {@code
 * google.rpc.ErrorInfo} with domain {@link #DOMAIN} and, as its reason, the name of an {@link
 * ErrorReason} value, so that callers branch on the reason and never parse messages:
 *
 * <pre>{@code
 * } catch (StatusRuntimeException e) {
 *   if (HubErrors.reason(e) == ErrorReason.DEVICE_NOT_BOUND) { ... }
 * }
 * }</pre>
 */
public final class HubErrors {
  /** The domain of the hub's ErrorInfo. */
  public static final String DOMAIN = "hub.passerelle.dev";

  private HubErrors() {}

  /**
   * The hub's ErrorInfo of a failed call, or null for an error the client made itself (a
   * deadline, a cancel, a lost connection).
   */
  public static ErrorInfo errorInfo(Throwable t) {
    com.google.rpc.Status st = StatusProto.fromThrowable(t);
    if (st == null) {
      return null;
    }
    for (Any detail : st.getDetailsList()) {
      if (!detail.is(ErrorInfo.class)) {
        continue;
      }
      try {
        ErrorInfo info = detail.unpack(ErrorInfo.class);
        if (DOMAIN.equals(info.getDomain())) {
          return info;
        }
      } catch (InvalidProtocolBufferException e) {
        return null;
      }
    }
    return null;
  }

  /**
   * The hub's reason for a failed call: {@link ErrorReason#ERROR_REASON_UNSPECIFIED} when the hub
   * gave none, {@link ErrorReason#UNRECOGNIZED} for a reason newer than this client.
   */
  public static ErrorReason reason(Throwable t) {
    ErrorInfo info = errorInfo(t);
    if (info == null) {
      return ErrorReason.ERROR_REASON_UNSPECIFIED;
    }
    try {
      return ErrorReason.valueOf(info.getReason());
    } catch (IllegalArgumentException e) {
      return ErrorReason.UNRECOGNIZED;
    }
  }
}

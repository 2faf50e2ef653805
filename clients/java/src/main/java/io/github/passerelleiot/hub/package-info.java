/**
 * Client helpers for Passerelle's hub API: {@link io.github.passerelleiot.hub.HubChannels} opens
 * channels with a token and a retry policy. The generated messages and stubs are in {@code
 * io.github.passerelleiot.hub.v1}.
 */
package io.github.passerelleiot.hub;

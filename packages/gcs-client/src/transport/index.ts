// Transports: where the host listens for channels the guest dials.
export type { AcceptOptions, ChannelListener, HostTransport } from "./types.js";
export { UnixTransport, type UnixTransportOptions } from "./unix.js";
export { TcpTransport, type TcpTransportOptions } from "./tcp.js";
export { HvsockTransport, type HvsockTransportOptions } from "./hvsock/transport.js";
export { encodeSockaddrHv, encodeGuid, decodeGuid, AF_HYPERV, SOCKADDR_HV_SIZE } from "./hvsock/sockaddr.js";

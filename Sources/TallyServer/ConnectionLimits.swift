import HummingbirdCore
import Logging
import NIOCore
import NIOHTTPTypes
import Synchronization
import TallyPostgres

/// What one HTTP connection may take from the server: how long it may take to send a request's head, how long
/// it may sit idle between requests, and how many connections may be open at once.
public struct ConnectionLimits: Sendable {
    /// A request's head (request line and headers) must arrive in full within this time of the connection
    /// opening, or of the request's first byte on a kept-alive connection; otherwise the connection is closed.
    public var headerTimeout: Duration
    /// A kept-alive connection with no request in progress is closed after this long.
    public var idleTimeout: Duration
    /// Connections beyond this many are answered `503` and closed at once.
    public var maximumConnections: Int
    /// Connections from one client address beyond this many are answered `503` and closed at once, so one
    /// address cannot take every connection (the socket's address: behind a load balancer, raise it).
    public var maximumPerAddress: Int

    public init(
        headerTimeout: Duration = .seconds(10), idleTimeout: Duration = .seconds(75), maximumConnections: Int = 4096,
        maximumPerAddress: Int = 256
    ) {
        self.headerTimeout = headerTimeout
        self.idleTimeout = idleTimeout
        self.maximumConnections = maximumConnections
        self.maximumPerAddress = maximumPerAddress
    }
}

#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

extension ConnectionLimits {
    /// Files the server needs besides its clients' connections: database connections, logs, the listener.
    public static let reservedDescriptors = 256

    /// Raises this process's open-file limit (the soft one, up to the hard one) so `connections` clients and
    /// `reservedDescriptors` more fit, then returns the limit in force; the cap on connections, not the
    /// operating system, then decides when a client is turned away.
    public static func raiseOpenFileLimit(toFit connections: Int) -> Int {
        var limit = rlimit()
        guard getrlimit(Int32(RLIMIT_NOFILE.rawValue), &limit) == 0 else { return Int.max }
        let wanted = rlim_t(connections + reservedDescriptors)
        if limit.rlim_cur < wanted {
            limit.rlim_cur = min(wanted, limit.rlim_max)
            _ = setrlimit(Int32(RLIMIT_NOFILE.rawValue), &limit)
            _ = getrlimit(Int32(RLIMIT_NOFILE.rawValue), &limit)
        }
        return limit.rlim_cur >= rlim_t(Int.max) ? Int.max : Int(limit.rlim_cur)
    }
}

/// HTTP/1.1 with `ConnectionLimits`: Hummingbird's `HTTP1Channel`, with a clock in front of its parser and a
/// count of open connections.
struct LimitedHTTP1Channel: ServerChildChannel {
    typealias Value = HTTP1Channel.Value

    let base: HTTP1Channel
    let limits: ConnectionLimits
    let open = OpenConnections()

    init(responder: @escaping HTTPChannelHandler.Responder, limits: ConnectionLimits) {
        self.base = HTTP1Channel(responder: responder, configuration: .init(additionalChannelHandlers: [RequestProgressHandler()]))
        self.limits = limits
    }

    func setup(channel: any Channel, logger: Logger) -> EventLoopFuture<Value> {
        let address = channel.remoteAddress?.ipAddress ?? "unknown"
        let (count, fromAddress) = open.opened(from: address)
        channel.closeFuture.whenComplete { [open] _ in open.closed(from: address) }
        return channel.eventLoop.makeCompletedFuture {
            if count > limits.maximumConnections {
                logger.warning("connection refused: \(count - 1) open, the limit is \(limits.maximumConnections)")
                try channel.pipeline.syncOperations.addHandler(RefuseConnectionHandler())
            } else if fromAddress > limits.maximumPerAddress {
                logger.warning("connection refused: \(fromAddress - 1) open from \(address), the limit per address is \(limits.maximumPerAddress)")
                try channel.pipeline.syncOperations.addHandler(RefuseConnectionHandler())
            } else {
                try channel.pipeline.syncOperations.addHandler(ConnectionClockHandler(limits: limits))
            }
        }.flatMap {
            base.setup(channel: channel, logger: logger)
        }
    }

    func handle(value: Value, logger: Logger) async {
        await base.handle(value: value, logger: logger)
    }
}

extension HTTPServerBuilder {
    /// HTTP/1.1 with Tally's connection limits.
    static func http1(limits: ConnectionLimits) -> HTTPServerBuilder {
        HTTPServerBuilder { responder in LimitedHTTP1Channel(responder: responder, limits: limits) }
    }
}

/// How many connections are open now, in all and per client address.
final class OpenConnections: Sendable {
    private let counts = Mutex<(total: Int, byAddress: [String: Int])>((0, [:]))

    /// Counts a new connection; the open connections in all and from `address`, this one included.
    func opened(from address: String) -> (total: Int, fromAddress: Int) {
        counts.withLock { counts in
            counts.total += 1
            counts.byAddress[address, default: 0] += 1
            return (counts.total, counts.byAddress[address] ?? 0)
        }
    }

    func closed(from address: String) {
        counts.withLock { counts in
            counts.total -= 1
            let left = (counts.byAddress[address] ?? 1) - 1
            counts.byAddress[address] = left > 0 ? left : nil
        }
    }
}

/// Sits in front of the HTTP parser and closes a connection that is too slow: a head not complete within
/// `headerTimeout` (counted from the connection opening, or from the first byte of a later request), or a
/// kept-alive connection idle for `idleTimeout`. While a request is being answered, no clock runs here (the
/// request has its own deadline).
final class ConnectionClockHandler: ChannelInboundHandler, RemovableChannelHandler {
    typealias InboundIn = ByteBuffer
    typealias InboundOut = ByteBuffer

    private enum Phase { case waitingForHead, inRequest, idle }

    let limits: ConnectionLimits
    private var phase = Phase.waitingForHead
    /// On `TimerWheel` (per request, an event-loop timer set and cancelled twice cost more than the rest of
    /// the connection's bookkeeping); `generation` tells a timer that fires on a clock already stopped.
    private var timer: TimerWheel.Timer?
    private var generation: UInt64 = 0

    init(limits: ConnectionLimits) {
        self.limits = limits
    }

    func handlerAdded(context: ChannelHandlerContext) {
        if context.channel.isActive { startClock(limits.headerTimeout, context: context) }
    }

    func channelActive(context: ChannelHandlerContext) {
        if timer == nil { startClock(limits.headerTimeout, context: context) }
        context.fireChannelActive()
    }

    func channelInactive(context: ChannelHandlerContext) {
        stopClock()
        context.fireChannelInactive()
    }

    func handlerRemoved(context: ChannelHandlerContext) {
        stopClock()
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        if phase == .idle {
            phase = .waitingForHead
            startClock(limits.headerTimeout, context: context)
        }
        context.fireChannelRead(data)
    }

    /// The parser has the whole head: the request is in progress.
    func headReceived() {
        phase = .inRequest
        stopClock()
    }

    /// The answer is written: the connection waits for the next request.
    func responseSent(context: ChannelHandlerContext) {
        guard phase == .inRequest else { return }
        phase = .idle
        startClock(limits.idleTimeout, context: context)
    }

    private func startClock(_ limit: Duration, context: ChannelHandlerContext) {
        stopClock()
        let generation = self.generation
        let handler = NIOLoopBound(self, eventLoop: context.eventLoop)
        let channel = context.channel
        timer = TimerWheel.shared.schedule(in: limit) {
            handler.eventLoop.execute {
                if handler.value.generation == generation { channel.close(promise: nil) }
            }
        }
    }

    private func stopClock() {
        generation &+= 1
        if let timer { TimerWheel.shared.cancel(timer) }
        timer = nil
    }
}

/// After the HTTP parser: tells the connection's clock when a request's head is complete and when its answer
/// has been written.
final class RequestProgressHandler: ChannelDuplexHandler, RemovableChannelHandler {
    typealias InboundIn = HTTPRequestPart
    typealias InboundOut = HTTPRequestPart
    typealias OutboundIn = HTTPResponsePart
    typealias OutboundOut = HTTPResponsePart

    /// The clock and its place in the pipeline (nil on a refused connection, which has none).
    private var clockContext: ChannelHandlerContext?
    private var clock: ConnectionClockHandler?

    func handlerAdded(context: ChannelHandlerContext) {
        clockContext = try? context.pipeline.syncOperations.context(handlerType: ConnectionClockHandler.self)
        clock = clockContext?.handler as? ConnectionClockHandler
    }

    func handlerRemoved(context: ChannelHandlerContext) {
        clockContext = nil
        clock = nil
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        if case .head = unwrapInboundIn(data) { clock?.headReceived() }
        context.fireChannelRead(data)
    }

    func write(context: ChannelHandlerContext, data: NIOAny, promise: EventLoopPromise<Void>?) {
        if case .end = unwrapOutboundIn(data), let clockContext { clock?.responseSent(context: clockContext) }
        context.write(data, promise: promise)
    }
}

/// A connection beyond the limit: answered `503` with `Retry-After` and closed, before anything it sends is read.
final class RefuseConnectionHandler: ChannelInboundHandler, RemovableChannelHandler {
    typealias InboundIn = ByteBuffer
    typealias OutboundOut = ByteBuffer

    static let answer: String = {
        let body = #"{"type":"/problems/too-many-connections","title":"Service Unavailable","status":503,"detail":"the server has as many connections open as it allows; retry in a moment"}"#
        return "HTTP/1.1 503 Service Unavailable\r\nContent-Type: application/problem+json\r\nRetry-After: 1\r\nConnection: close\r\nContent-Length: \(body.utf8.count)\r\n\r\n\(body)"
    }()

    func handlerAdded(context: ChannelHandlerContext) {
        if context.channel.isActive { refuse(context) }
    }

    func channelActive(context: ChannelHandlerContext) {
        refuse(context)
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {}

    private var refused = false

    private func refuse(_ context: ChannelHandlerContext) {
        guard !refused else { return }
        refused = true
        let channel = context.channel
        context.writeAndFlush(wrapOutboundOut(channel.allocator.buffer(string: Self.answer))).whenComplete { _ in
            channel.close(promise: nil)
        }
    }
}

import Logging
import ServiceLifecycle
import TallyCredits
import TallyPostgres

/// Delivers the outbox's due messages (mail today) every `interval`: each is claimed with a lease, sent, and
/// marked delivered, or marked failed with the cause and tried again after a growing wait. A server killed
/// after a commit and before delivery leaves the message due: it goes out when a server runs again.
struct OutboxService: Service {
    let database: Database
    let sender: MailSender
    let interval: Duration
    let logger: Logger

    func run() async throws {
        try await repeatRounds(every: interval, work: "outbox", logger: logger) { context in
            for message in try await Outbox.claim(database: database, context: context) {
                guard let mail = message.mail else {
                    try await Outbox.failed(message.id, attempts: message.attempts, error: "no sender for a \(message.kind) message", database: database, context: context)
                    continue
                }
                do {
                    try await sender.send(mail, id: message.id)
                    try await Outbox.delivered(message.id, database: database, context: context)
                } catch where !Task.isCancelled {
                    context.logger.warning("mail \(message.id) to \(mail.to) not delivered (attempt \(message.attempts)); will retry", metadata: ["error": "\(error)"])
                    try await Outbox.failed(message.id, attempts: message.attempts, error: "\(error)", database: database, context: context)
                }
            }
        }
    }
}

import NIOSSL
import PostgresNIO
import SwitchboardStore

/// Turns the driver's errors into a ``StoreError`` that says what went wrong and what to do.
///
/// postgres-nio hides the server's message from `description` (so that it cannot leak to end
/// users); an administrator starting the server needs it, so the cases a person can fix are named
/// here, from the SQLSTATE codes of PostgreSQL's documentation (appendix A).
enum ConnectionDiagnosis {
    static func explain(_ error: any Error, configuration: PostgresStore.Configuration) -> StoreError {
        if let error = error as? StoreError { return error }
        let address = configuration.address
        guard let error = error as? PSQLError else {
            return StoreError(.unavailable, "PostgreSQL at \(address) failed: \(String(reflecting: error))", cause: error)
        }
        let server = error.serverInfo
        let sqlState = server?[.sqlState]
        let serverMessage = server?[.message] ?? ""
        let message: String
        switch (error.code, sqlState) {
        case (_, nil) where error.underlying is NIOSSLError:
            let reason = error.underlying.map { String(describing: $0) } ?? ""
            message = """
                the TLS handshake with PostgreSQL at \(configuration.host):\(configuration.port) failed (\(reason)); \
                if the server's certificate is of its own making, trust it with &sslrootcert=/path/to/ca.crt in the URL \
                (or, on a network you trust, sslmode=disable)
                """
        case (.connectionError, _):
            let reason = error.underlying.map { String(describing: $0) } ?? "no answer"
            message = """
                cannot connect to PostgreSQL at \(configuration.host):\(configuration.port) (\(reason)); \
                check that the server runs and listens there (listen_addresses, port) and that the URL names them
                """
        case (.sslUnsupported, _):
            message = """
                PostgreSQL at \(configuration.host):\(configuration.port) does not offer TLS, which sslmode=require asks for; \
                enable ssl on the server or use sslmode=prefer
                """
        case (_, "3D000"?):
            message = """
                the database \(configuration.database) does not exist on \(configuration.host):\(configuration.port); \
                create it with `createdb -O \(configuration.username) \(configuration.database)` or fix the URL
                """
        case (_, "28P01"?):
            message = "PostgreSQL refused the password of user \(configuration.username); check the password in the URL"
        case (_, "28000"?) where serverMessage.contains("SSL off") || serverMessage.contains("no encryption"):
            message = "PostgreSQL at \(configuration.host):\(configuration.port) requires TLS; add ?sslmode=require to the URL"
        case (_, "28000"?) where serverMessage.contains("does not exist"):
            message = """
                the role \(configuration.username) does not exist on \(configuration.host):\(configuration.port); \
                create it with `createuser \(configuration.username)` or fix the user in the URL
                """
        case (_, "28000"?):
            message = "PostgreSQL refused user \(configuration.username) on \(address): \(serverMessage); check pg_hba.conf and the URL"
        case (.authMechanismRequiresPassword, _):
            message = "PostgreSQL asks for a password for user \(configuration.username); add it to the URL (postgres://USER:PASSWORD@…)"
        case (_, let state?):
            message = "PostgreSQL at \(address) failed (SQLSTATE \(state)): \(serverMessage)"
        default:
            message = "PostgreSQL at \(address) failed: \(String(reflecting: error))"
        }
        return StoreError(.unavailable, message, cause: error)
    }
}

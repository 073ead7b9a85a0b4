import CPgQuery
import Foundation

/// PostgreSQL's own parser, through libpg_query: statements are split, parsed and (inside `DO` blocks)
/// read as PL/pgSQL exactly as the server would, never by a hand-written tokenizer.
enum SQLParser {
    /// The parser refused the text: its message, and where (0-based character offset into the text).
    struct Failure: Error, Sendable {
        var message: String
        var characterOffset: Int
    }

    /// One statement of a text, as the parser delimits it (without its `;`), with leading comments kept.
    struct Piece: Sendable {
        var text: String
        /// Offset of the piece's first byte in the UTF-8 of the text it was split from.
        var utf8Offset: Int
    }

    /// Splits `sql` into statements with the parser (so `;` in strings, comments, dollar quotes and
    /// `BEGIN ATOMIC` bodies never splits); pieces that are only comments and whitespace are dropped.
    static func split(_ sql: String) throws(Failure) -> [Piece] {
        let bytes = Array(sql.utf8)
        let result = pg_query_split_with_parser(sql)
        defer { pg_query_free_split_result(result) }
        if let error = result.error { throw failure(error) }
        var pieces: [Piece] = []
        for i in 0..<Int(result.n_stmts) {
            guard let stmt = result.stmts[i]?.pointee else { continue }
            let start = Int(stmt.stmt_location)
            let end = stmt.stmt_len == 0 ? bytes.count : min(bytes.count, start + Int(stmt.stmt_len))
            let text = String(decoding: bytes[start..<end], as: UTF8.self)
            pieces.append(Piece(text: text, utf8Offset: start))
        }
        return pieces
    }

    /// The whole parse tree of `sql`'s first statement, for lint (read again only when a plan lints).
    static func tree(_ sql: String) -> ParseTree {
        let result = pg_query_parse(sql)
        defer { pg_query_free_parse_result(result) }
        guard result.error == nil, let tree = result.parse_tree,
            let json = try? JSONSerialization.jsonObject(with: Data(String(cString: tree).utf8)) as? [String: Any],
            let first = (json["stmts"] as? [[String: Any]])?.first?["stmt"]
        else { return .null }
        return ParseTree(json: first)
    }

    /// The parse tree of `sql` (one or more statements), as the typed nodes Tally reads.
    static func parse(_ sql: String) throws(Failure) -> [ParseNode] {
        let result = pg_query_parse(sql)
        defer { pg_query_free_parse_result(result) }
        if let error = result.error { throw failure(error) }
        guard let tree = result.parse_tree else { return [] }
        do {
            return try JSONDecoder().decode(Statements.self, from: Data(String(cString: tree).utf8)).stmts.map(\.stmt)
        } catch {
            throw Failure(message: "libpg_query returned a parse tree Tally cannot read: \(error)", characterOffset: 0)
        }
    }

    /// The SQL statements inside a PL/pgSQL body (a `DO` block's code), in order, with the line of each
    /// within the body (1-based). Dynamic SQL (`EXECUTE 'text'`) cannot be seen and is reported in `dynamic`.
    static func plpgsql(body: String) throws(Failure) -> PLpgSQLBody {
        var tag = "tally_do"
        while body.contains("$\(tag)$") { tag += "_" }
        let wrapper = "CREATE FUNCTION tally_do() RETURNS void LANGUAGE plpgsql AS $\(tag)$\(body)$\(tag)$"
        let result = pg_query_parse_plpgsql(wrapper)
        defer { pg_query_free_plpgsql_parse_result(result) }
        if let error = result.error {
            var f = failure(error)
            f.characterOffset = max(0, f.characterOffset - (wrapper.count - body.count - tag.count - 2))
            throw f
        }
        guard let functions = result.plpgsql_funcs,
            let json = try? JSONSerialization.jsonObject(with: Data(String(cString: functions).utf8))
        else { return PLpgSQLBody(statements: [], dynamic: 0, singleStatementBlock: false) }
        var out = PLpgSQLBody(statements: [], dynamic: 0, singleStatementBlock: false)
        collect(json, into: &out)
        out.singleStatementBlock = isSingleStatementBlock(json)
        return out
    }

    struct PLpgSQLBody: Sendable {
        /// Each SQL statement the code runs (`PLpgSQL_stmt_execsql`), with its line in the body.
        var statements: [(sql: String, line: Int)]
        /// How many `EXECUTE` statements run text built at run time.
        var dynamic: Int
        /// The body is `BEGIN <one statement>; [EXCEPTION …] END`: what drizzle-kit writes around a foreign key.
        var singleStatementBlock: Bool
    }

    private static func collect(_ json: Any, into body: inout PLpgSQLBody) {
        if let object = json as? [String: Any] {
            if let exec = object["PLpgSQL_stmt_execsql"] as? [String: Any],
                let expr = (exec["sqlstmt"] as? [String: Any])?["PLpgSQL_expr"] as? [String: Any],
                let query = expr["query"] as? String
            {
                body.statements.append((query, exec["lineno"] as? Int ?? 1))
                return
            }
            if object["PLpgSQL_stmt_dynexecute"] != nil { body.dynamic += 1 }
            for key in object.keys.sorted() where key != "datums" { collect(object[key]!, into: &body) }
        } else if let array = json as? [Any] {
            for element in array { collect(element, into: &body) }
        }
    }

    /// The function's action is a block holding one inner block whose body is one SQL statement (the
    /// implicit RETURN PL/pgSQL appends aside).
    private static func isSingleStatementBlock(_ json: Any) -> Bool {
        guard let function = ((json as? [Any])?.first as? [String: Any])?["PLpgSQL_function"] as? [String: Any],
            let action = (function["action"] as? [String: Any])?["PLpgSQL_stmt_block"] as? [String: Any],
            let outer = action["body"] as? [[String: Any]]
        else { return false }
        let blocks = outer.filter { $0["PLpgSQL_stmt_return"] == nil }
        guard blocks.count == 1, let inner = blocks[0]["PLpgSQL_stmt_block"] as? [String: Any],
            let statements = inner["body"] as? [[String: Any]]
        else { return false }
        return statements.count == 1 && statements[0]["PLpgSQL_stmt_execsql"] != nil
    }

    private static func failure(_ error: UnsafeMutablePointer<PgQueryError>) -> Failure {
        let message = error.pointee.message.map { String(cString: $0) } ?? "syntax error"
        return Failure(message: message, characterOffset: max(0, Int(error.pointee.cursorpos) - 1))
    }

    private struct Statements: Decodable {
        struct RawStmt: Decodable { var stmt: ParseNode }
        var stmts: [RawStmt]
    }
}

/// The line (1-based) of a character offset in `text`.
func lineNumber(ofCharacter offset: Int, in text: String) -> Int {
    1 + lineBreaks(in: text.prefix(offset))
}

/// How many line breaks `text` holds (`\r\n` is one character, and one break).
func lineBreaks(in text: some Sequence<Character>) -> Int {
    text.reduce(0) { $1 == "\n" || $1 == "\r\n" ? $0 + 1 : $0 }
}

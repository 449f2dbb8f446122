// The PostgreSQL JDBC driver (Debian's libpostgresql-jdbc-java) against the
// Postgres front, as a Java application uses it: a password login, prepared
// statements with parameters, timestamps, numbers and NULLs, and COPY FROM
// STDIN through the driver's CopyManager. tests/it/clients.rs compiles and
// runs it (java runs a single source file) with the server's port and credentials.
//
// usage: java -cp /usr/share/java/postgresql.jar JdbcCheck.java PORT DATABASE USER PASSWORD

import java.io.StringReader;
import java.sql.Connection;
import java.sql.DriverManager;
import java.sql.PreparedStatement;
import java.sql.ResultSet;
import java.sql.SQLException;
import java.sql.Timestamp;
import java.time.Instant;
import java.util.Properties;
import org.postgresql.PGConnection;

public class JdbcCheck {
    static void check(String description, boolean ok, Object detail) {
        if (!ok) {
            throw new AssertionError(description + ": " + detail);
        }
        System.out.println("ok jdbc " + description);
    }

    public static void main(String[] args) throws Exception {
        String url = "jdbc:postgresql://127.0.0.1:" + args[0] + "/" + args[1];
        Properties props = new Properties();
        props.setProperty("user", args[2]);
        props.setProperty("password", args[3]);
        try (Connection conn = DriverManager.getConnection(url, props)) {
            check("logs in with a password", conn.isValid(5), url);
            Instant base = Instant.parse("2024-01-01T00:00:00Z");
            try (PreparedStatement insert = conn.prepareStatement(
                    "INSERT INTO jdbc_m (time, host, v, n) VALUES (?, ?, ?, ?)")) {
                insert.setTimestamp(1, Timestamp.from(base));
                insert.setString(2, "a");
                insert.setDouble(3, 1.5);
                insert.setLong(4, 10L);
                check("inserts with parameters", insert.executeUpdate() == 1, "");
                insert.setTimestamp(1, Timestamp.from(base.plusSeconds(60)));
                insert.setString(2, "b");
                insert.setNull(3, java.sql.Types.DOUBLE);
                insert.setLong(4, 9_007_199_254_740_993L);
                check("inserts a NULL and a long past a double's digits", insert.executeUpdate() == 1, "");
            }
            StringBuilder lines = new StringBuilder();
            for (int i = 2; i <= 4; i++) {
                lines.append(base.plusSeconds(60L * i)).append("\tc\t").append(i).append(".25\t").append(i).append('\n');
            }
            long copied = conn.unwrap(PGConnection.class).getCopyAPI()
                    .copyIn("COPY jdbc_m (time, host, v, n) FROM STDIN", new StringReader(lines.toString()));
            check("copies rows from stdin", copied == 3, copied);

            try (PreparedStatement select = conn.prepareStatement(
                    "SELECT time, host, v, n FROM jdbc_m WHERE host = ? OR n >= ? ORDER BY time")) {
                select.setString(1, "a");
                select.setLong(2, 3L);
                try (ResultSet rows = select.executeQuery()) {
                    check("selects with parameters", rows.next(), "no row");
                    check("reads a timestamp", rows.getTimestamp("time").toInstant().equals(base), rows.getTimestamp("time"));
                    check("reads a float", rows.getDouble("v") == 1.5, rows.getDouble("v"));
                    check("reads a bigint", rows.getLong("n") == 10L, rows.getLong("n"));
                    check("has the second row", rows.next(), "no second row");
                    rows.getDouble("v");
                    check("reads a NULL", rows.wasNull(), rows.getObject("v"));
                    check("reads a long exactly", rows.getLong("n") == 9_007_199_254_740_993L, rows.getLong("n"));
                    int more = 0;
                    while (rows.next()) {
                        more++;
                    }
                    check("reads the rows COPY wrote", more == 2, more);
                }
            }
            try {
                conn.createStatement().executeQuery("SELECT nope FROM jdbc_m");
                check("a bad query is refused", false, "it ran");
            } catch (SQLException e) {
                check("gets a SQLSTATE for a bad query", "42703".equals(e.getSQLState()), e.getSQLState());
            }
            var tables = conn.getMetaData().getTables(null, null, "jdbc_m", null);
            check("finds the table through DatabaseMetaData", tables.next(), "no table");
        }
    }
}

// What DBeaver and Metabase send when they connect, list a database's
// tables and columns, open a table and build a chart, replayed through the
// PostgreSQL JDBC driver both of them use (Debian's libpostgresql-jdbc-java),
// with the same JDBC calls, connection properties and parameter types.
//
// The statements were taken from the clients' source:
//  - DBeaver 24.2 (plugins/org.jkiss.dbeaver.ext.postgresql: PostgreDataSource,
//    PostgreDatabase, PostgreSchema, PostgreDataTypeCache, PostgreExecutionContext;
//    JDBCTable.readData for the Data tab), with its "PostgreSQL" server type's
//    prepareThreshold=0;
//  - Metabase 0.50-0.56 (src/metabase/driver/postgres.clj: describe-syncable-tables,
//    current-user-table-privileges, describe-fields-sql, describe-fks-sql;
//    sql_jdbc/sync/describe_table.clj: getColumns and getPrimaryKeys per table;
//    sync/analyze fingerprints, field values and the query builder's SQL,
//    rendered by HoneySQL), with pgjdbc's default prepareThreshold (so the
//    later runs of a statement use named statements and binary results).
//
// tests/it/clients.rs writes the table `cpu` (host a and b, usage, n) into the
// database first and runs this file with java's single-file launcher.
//
// usage: java -cp /usr/share/java/postgresql.jar BiToolsCheck.java dbeaver|metabase PORT DATABASE USER PASSWORD

import java.sql.Connection;
import java.sql.DatabaseMetaData;
import java.sql.DriverManager;
import java.sql.PreparedStatement;
import java.sql.ResultSet;
import java.sql.ResultSetMetaData;
import java.sql.SQLException;
import java.sql.Statement;
import java.sql.Types;
import java.time.OffsetDateTime;
import java.util.ArrayList;
import java.util.HashMap;
import java.util.List;
import java.util.Map;
import java.util.Properties;

public class BiToolsCheck {
    static String tool;

    static void check(String description, boolean ok, Object detail) {
        if (!ok) {
            throw new AssertionError(tool + ": " + description + ": " + detail);
        }
        System.out.println("ok " + tool + " " + description);
    }

    /** The rows of `sql` run as a prepared statement with `parameters`, each a map from column label (in lower case, as JDBC matches labels) to text. */
    static List<Map<String, String>> rows(Connection conn, int maxRows, String sql, Object... parameters) throws SQLException {
        try (PreparedStatement statement = conn.prepareStatement(sql)) {
            statement.setMaxRows(maxRows);
            for (int i = 0; i < parameters.length; i++) {
                Object p = parameters[i];
                if (p instanceof Long) {
                    statement.setLong(i + 1, (Long) p);
                } else if (p instanceof OffsetDateTime) {
                    statement.setObject(i + 1, p);
                } else {
                    statement.setString(i + 1, (String) p);
                }
            }
            return read(statement.executeQuery());
        }
    }

    static List<Map<String, String>> read(ResultSet resultSet) throws SQLException {
        List<Map<String, String>> out = new ArrayList<>();
        try (ResultSet rs = resultSet) {
            ResultSetMetaData meta = rs.getMetaData();
            while (rs.next()) {
                Map<String, String> row = new HashMap<>();
                for (int i = 1; i <= meta.getColumnCount(); i++) {
                    row.put(meta.getColumnLabel(i).toLowerCase(java.util.Locale.ROOT), rs.getString(i));
                }
                out.add(row);
            }
        }
        return out;
    }

    static Map<String, String> byName(List<Map<String, String>> rows, String key, String value) {
        return rows.stream().filter(r -> value.equals(r.get(key))).findFirst().orElse(null);
    }

    public static void main(String[] args) throws Exception {
        tool = args[0];
        String url = "jdbc:postgresql://127.0.0.1:" + args[1] + "/" + args[2];
        Properties props = new Properties();
        props.setProperty("user", args[3]);
        props.setProperty("password", args[4]);
        if (tool.equals("dbeaver")) {
            props.setProperty("prepareThreshold", "0");
            try (Connection conn = DriverManager.getConnection(url, props)) {
                dbeaver(conn, args[2]);
            }
        } else {
            props.setProperty("ApplicationName", "Metabase v0.56.0 [hourglass-test]");
            try (Connection conn = DriverManager.getConnection(url, props)) {
                metabase(conn);
            }
        }
    }

    static final String SCHEMAS = """
        SELECT n.oid,n.*,d.description FROM pg_catalog.pg_namespace n
        LEFT OUTER JOIN pg_catalog.pg_description d ON d.objoid=n.oid AND d.objsubid=0 AND d.classoid='pg_namespace'::regclass
         ORDER BY nspname""";

    static final String DATA_TYPES = """
        SELECT t.oid,t.*,c.relkind,format_type(nullif(t.typbasetype, 0), t.typtypmod) as base_type_name, d.description
        FROM pg_catalog.pg_type t
        LEFT OUTER JOIN pg_catalog.pg_type et ON et.oid=t.typelem\s
        LEFT OUTER JOIN pg_catalog.pg_class c ON c.oid=t.typrelid
        LEFT OUTER JOIN pg_catalog.pg_description d ON t.oid=d.objoid
        WHERE t.typname IS NOT NULL
        AND (c.relkind IS NULL OR c.relkind = 'c') AND (et.typcategory IS NULL OR et.typcategory <> 'C')""";

    static final String TABLES = """
        SELECT c.oid,c.*,d.description,pg_catalog.pg_get_expr(c.relpartbound, c.oid) as partition_expr,  pg_catalog.pg_get_partkeydef(c.oid) as partition_key\s
        FROM pg_catalog.pg_class c
        LEFT OUTER JOIN pg_catalog.pg_description d ON d.objoid=c.oid AND d.objsubid=0 AND d.classoid='pg_class'::regclass
        WHERE c.relnamespace=? AND c.relkind not in ('i','I','c')""";

    static final String COLUMNS = """
        SELECT c.relname,a.*,pg_catalog.pg_get_expr(ad.adbin, ad.adrelid, true) as def_value,dsc.description,dep.objid
        FROM pg_catalog.pg_attribute a
        INNER JOIN pg_catalog.pg_class c ON (a.attrelid=c.oid)
        LEFT OUTER JOIN pg_catalog.pg_attrdef ad ON (a.attrelid=ad.adrelid AND a.attnum = ad.adnum)
        LEFT OUTER JOIN pg_catalog.pg_description dsc ON (c.oid=dsc.objoid AND a.attnum = dsc.objsubid)
        LEFT OUTER JOIN pg_depend dep on dep.refobjid = a.attrelid AND dep.deptype = 'i' and dep.refobjsubid = a.attnum and dep.classid = dep.refclassid
        WHERE NOT a.attisdropped AND c.relkind not in ('i','I','c') AND c.oid=?
        ORDER BY a.attnum""";

    static final String CONSTRAINTS = """
        SELECT c.oid,c.*,t.relname as tabrelname,rt.relnamespace as refnamespace,d.description, case when c.contype='c' then "substring"(pg_get_constraintdef(c.oid), 7) else null end consrc_copy
        FROM pg_catalog.pg_constraint c
        INNER JOIN pg_catalog.pg_class t ON t.oid=c.conrelid
        LEFT OUTER JOIN pg_catalog.pg_class rt ON rt.oid=c.confrelid
        LEFT OUTER JOIN pg_catalog.pg_description d ON d.objoid=c.oid AND d.objsubid=0 AND d.classoid='pg_constraint'::regclass
        WHERE c.conrelid=?
        ORDER BY c.oid""";

    static final String INDEXES = """
        SELECT i.*,i.indkey as keys,c.relname,c.relnamespace,c.relam,c.reltablespace,tc.relname as tabrelname,dsc.description,pg_catalog.pg_get_expr(i.indpred, i.indrelid) as pred_expr,pg_catalog.pg_get_expr(i.indexprs, i.indrelid, true) as expr,pg_catalog.pg_relation_size(i.indexrelid) as index_rel_size,pg_catalog.pg_stat_get_numscans(i.indexrelid) as index_num_scans
        FROM pg_catalog.pg_index i
        INNER JOIN pg_catalog.pg_class c ON c.oid=i.indexrelid
        INNER JOIN pg_catalog.pg_class tc ON tc.oid=i.indrelid
        LEFT OUTER JOIN pg_catalog.pg_description dsc ON i.indexrelid=dsc.objoid
        WHERE  i.indrelid=? ORDER BY c.relname""";

    static void dbeaver(Connection conn, String database) throws Exception {
        // Connecting: the driver's SET extra_float_digits has run; DBeaver names
        // the connection, then reads the session's defaults and the catalog.
        conn.setClientInfo("ApplicationName", "DBeaver 24.2.4 - Main " + database);
        check("names its connection", "DBeaver 24.2.4 - Main bi".equals(conn.getClientInfo("ApplicationName")), "");
        Map<String, String> defaults = rows(conn, 0, "SELECT current_schema(),session_user").get(0);
        check("reads the current schema", "public".equals(defaults.get("current_schema")), defaults);
        List<Map<String, String>> schemas = rows(conn, 0, SCHEMAS);
        check("lists schemas", byName(schemas, "nspname", "public") != null && byName(schemas, "nspname", "pg_catalog") != null, schemas);
        String searchPath = rows(conn, 0, "SHOW search_path").get(0).values().iterator().next();
        check("reads the search path", searchPath.contains("public"), searchPath);
        List<Map<String, String>> databases = rows(conn, 0, "SELECT db.oid,db.* FROM pg_catalog.pg_database db WHERE datname=?", database);
        check("reads its database", databases.size() == 1 && database.equals(databases.get(0).get("datname")), databases);
        List<Map<String, String>> settings = rows(conn, 0, "select * from pg_catalog.pg_settings where name=?", "standard_conforming_strings");
        check("reads a setting", settings.size() == 1 && "on".equals(settings.get(0).get("setting")), settings);
        List<Map<String, String>> limit = rows(conn, 0, "select * from pg_catalog.pg_settings where name=?", "max_index_keys");
        check("reads the limit JDBC sizes key queries by", limit.size() == 1 && "32".equals(limit.get(0).get("setting")), limit);
        rows(conn, 0, "SELECT * FROM pg_catalog.pg_enum WHERE 1<>1 LIMIT 1");
        rows(conn, 0, "SELECT reltype FROM pg_catalog.pg_class WHERE 1<>1 LIMIT 1");
        List<Map<String, String>> types = rows(conn, 0, DATA_TYPES);
        Map<String, String> timestamptz = byName(types, "typname", "timestamptz");
        check("loads data types", timestamptz != null && "1184".equals(timestamptz.get("oid")) && "D".equals(timestamptz.get("typcategory")), timestamptz);
        check("loads enum values", rows(conn, 0, "SELECT * FROM pg_catalog.pg_enum").isEmpty(), "");

        // The navigator: a schema's tables, then a table's columns, keys and
        // indexes, looked up by oid (sent as int8).
        long namespace = Long.parseLong(byName(schemas, "nspname", "public").get("oid"));
        List<Map<String, String>> tables = rows(conn, 0, TABLES, namespace);
        Map<String, String> cpu = byName(tables, "relname", "cpu");
        check("lists the schema's tables", cpu != null && "r".equals(cpu.get("relkind")), tables);
        long table = Long.parseLong(cpu.get("oid"));
        Map<String, String> columnTypes = new HashMap<>();
        for (Map<String, String> column : rows(conn, 0, COLUMNS, table)) {
            columnTypes.put(column.get("attname"), column.get("atttypid"));
        }
        check("lists a table's columns with their types",
            columnTypes.equals(Map.of("host", "25", "usage", "701", "n", "20", "time", "1184")), columnTypes);
        check("lists a table's constraints (none)", rows(conn, 0, CONSTRAINTS, table).isEmpty(), "");
        check("lists a table's indexes (none)", rows(conn, 0, INDEXES, table).isEmpty(), "");
        check("lists foreign keys to the table (none)",
            rows(conn, 0, "SELECT DISTINCT connamespace FROM pg_catalog.pg_constraint WHERE confrelid=?", table).isEmpty(), "");
        Map<String, String> sizes = rows(conn, 0,
            "select pg_catalog.pg_total_relation_size(?) as total_rel_size,pg_catalog.pg_relation_size(?) as rel_size", table, table).get(0);
        check("reads table sizes (unknown by oid)", sizes.containsKey("total_rel_size") && sizes.get("total_rel_size") == null, sizes);
        rows(conn, 0, "SELECT a.oid,a.*,pd.description FROM pg_catalog.pg_roles a \nleft join pg_catalog.pg_shdescription pd on a.oid = pd.objoid\nORDER BY a.rolname");
        rows(conn, 0, "select * from pg_catalog.pg_policies where schemaname=? and tablename=?", "public", "cpu");
        rows(conn, 0, "SELECT r.oid,r.*, pg_get_ruledef(r.oid) AS definition\nFROM pg_rewrite r\nWHERE r.ev_class=" + table + " AND r.rulename <> '_RETURN'::name");
        rows(conn, 0, "SELECT t.oid,t.*,pg_tablespace_location(t.oid) loc\nFROM pg_catalog.pg_tablespace t \nORDER BY t.oid");
        check("runs the queries of a table's triggers, rules, policies, roles and tablespaces", true, "");

        // The Data tab: the table's rows, limited by the Execute message, then
        // the row count on request.
        List<Map<String, String>> page = rows(conn, 1, "SELECT x.* FROM public.cpu x");
        check("reads the Data tab a page at a time", page.size() == 1 && page.get(0).get("host") != null, page);
        List<Map<String, String>> sorted = rows(conn, 200, "SELECT x.* FROM public.cpu x ORDER BY x.host DESC");
        check("sorts the Data tab", sorted.size() == 2 && "b".equals(sorted.get(0).get("host")), sorted);
        check("counts a table's rows", "2".equals(rows(conn, 0, "SELECT COUNT(*) FROM public.cpu").get(0).get("count")), "");
        try (Statement statement = conn.createStatement()) {
            statement.execute("SET search_path = public,public,\"$user\"");
        }
        check("accepts an SQL editor's SET search_path", conn.isValid(5), "");
    }

    static final String PRIVILEGES = """
        with table_privileges as (
         select
           NULL as role,
           t.schemaname as schema,
           t.objectname as table,
           pg_catalog.has_any_column_privilege(current_user, '"' || replace(t.schemaname, '"', '""') || '"' || '.' || '"' || replace(t.objectname, '"', '""') || '"',  'update') as update,
           pg_catalog.has_any_column_privilege(current_user, '"' || replace(t.schemaname, '"', '""') || '"' || '.' || '"' || replace(t.objectname, '"', '""') || '"',  'select') as select,
           pg_catalog.has_any_column_privilege(current_user, '"' || replace(t.schemaname, '"', '""') || '"' || '.' || '"' || replace(t.objectname, '"', '""') || '"',  'insert') as insert,
           pg_catalog.has_table_privilege(     current_user, '"' || replace(t.schemaname, '"', '""') || '"' || '.' || '"' || replace(t.objectname, '"', '""') || '"',  'delete') as delete
         from (
           select schemaname, tablename as objectname from pg_catalog.pg_tables
           union
           select schemaname, viewname as objectname from pg_catalog.pg_views
           union
           select schemaname, matviewname as objectname from pg_catalog.pg_matviews
         ) t
         where t.schemaname !~ '^pg_'
           and t.schemaname <> 'information_schema'
           and pg_catalog.has_schema_privilege(current_user, t.schemaname, 'usage')
        )
        select t.*
        from table_privileges t""";

    static final String SYNCABLE_TABLES = "SELECT \"n\".\"nspname\" AS \"schema\", \"c\".\"relname\" AS \"name\", CASE \"c\".\"relkind\" WHEN 'r' THEN 'TABLE' WHEN 'p' THEN 'PARTITIONED TABLE' WHEN 'v' THEN 'VIEW' WHEN 'f' THEN 'FOREIGN TABLE' WHEN 'm' THEN 'MATERIALIZED VIEW' ELSE NULL END AS \"type\", \"d\".\"description\" AS \"description\", \"stat\".\"n_live_tup\" AS \"estimated_row_count\" FROM \"pg_catalog\".\"pg_class\" AS \"c\" INNER JOIN \"pg_catalog\".\"pg_namespace\" AS \"n\" ON \"c\".\"relnamespace\" = \"n\".\"oid\" LEFT JOIN \"pg_catalog\".\"pg_description\" AS \"d\" ON (\"c\".\"oid\" = \"d\".\"objoid\") AND (\"d\".\"objsubid\" = ?) AND (\"d\".\"classoid\" = 'pg_class'::regclass) LEFT JOIN \"pg_stat_user_tables\" AS \"stat\" ON (\"n\".\"nspname\" = \"stat\".\"schemaname\") AND (\"c\".\"relname\" = \"stat\".\"relname\") WHERE (\"c\".\"relnamespace\" = \"n\".\"oid\") AND (\"n\".\"nspname\" !~ ?) AND (\"n\".\"nspname\" <> ?) AND c.relkind in ('r', 'p', 'v', 'f', 'm') AND (\"n\".\"nspname\" IN (?)) ORDER BY \"type\" ASC, \"schema\" ASC, \"name\" ASC";

    static final String FIELDS = "SELECT \"c\".\"column_name\" AS \"name\", CASE WHEN \"c\".\"udt_schema\" IN ('public', 'pg_catalog') THEN FORMAT('%s', \"c\".\"udt_name\") ELSE FORMAT('\"%s\".\"%s\"', \"c\".\"udt_schema\", \"c\".\"udt_name\") END AS \"database-type\", \"c\".\"ordinal_position\" - 1 AS \"database-position\", \"c\".\"table_schema\" AS \"table-schema\", \"c\".\"table_name\" AS \"table-name\", \"pk\".\"column_name\" IS NOT NULL AS \"pk?\", COL_DESCRIPTION(CAST(CAST(FORMAT('%I.%I', CAST(\"c\".\"table_schema\" AS TEXT), CAST(\"c\".\"table_name\" AS TEXT)) AS REGCLASS) AS OID), \"c\".\"ordinal_position\") AS \"field-comment\", ((\"column_default\" IS NULL) OR (LOWER(\"column_default\") = 'null')) AND (\"is_nullable\" = 'NO') AND NOT (((\"column_default\" IS NOT NULL) AND (\"column_default\" LIKE '%nextval(%')) OR (\"is_identity\" <> 'NO')) AS \"database-required\", ((\"column_default\" IS NOT NULL) AND (\"column_default\" LIKE '%nextval(%')) OR (\"is_identity\" <> 'NO') AS \"database-is-auto-increment\" FROM \"information_schema\".\"columns\" AS \"c\" LEFT JOIN (SELECT \"tc\".\"table_schema\", \"tc\".\"table_name\", \"kc\".\"column_name\" FROM \"information_schema\".\"table_constraints\" AS \"tc\" INNER JOIN \"information_schema\".\"key_column_usage\" AS \"kc\" ON (\"tc\".\"constraint_name\" = \"kc\".\"constraint_name\") AND (\"tc\".\"table_schema\" = \"kc\".\"table_schema\") AND (\"tc\".\"table_name\" = \"kc\".\"table_name\") WHERE \"tc\".\"constraint_type\" = 'PRIMARY KEY') AS \"pk\" ON (\"c\".\"table_schema\" = \"pk\".\"table_schema\") AND (\"c\".\"table_name\" = \"pk\".\"table_name\") AND (\"c\".\"column_name\" = \"pk\".\"column_name\") WHERE c.table_schema !~ '^information_schema|catalog_history|pg_' AND (\"c\".\"table_schema\" IN (?)) UNION ALL SELECT \"pa\".\"attname\" AS \"name\", CASE WHEN \"ptn\".\"nspname\" IN ('public', 'pg_catalog') THEN FORMAT('%s', \"pt\".\"typname\") ELSE FORMAT('\"%s\".\"%s\"', \"ptn\".\"nspname\", \"pt\".\"typname\") END AS \"database-type\", \"pa\".\"attnum\" - 1 AS \"database-position\", \"pn\".\"nspname\" AS \"table-schema\", \"pc\".\"relname\" AS \"table-name\", FALSE AS \"pk?\", NULL AS \"field-comment\", FALSE AS \"database-required\", FALSE AS \"database-is-auto-increment\" FROM \"pg_catalog\".\"pg_class\" AS \"pc\" INNER JOIN \"pg_catalog\".\"pg_namespace\" AS \"pn\" ON \"pn\".\"oid\" = \"pc\".\"relnamespace\" INNER JOIN \"pg_catalog\".\"pg_attribute\" AS \"pa\" ON \"pa\".\"attrelid\" = \"pc\".\"oid\" INNER JOIN \"pg_catalog\".\"pg_type\" AS \"pt\" ON \"pt\".\"oid\" = \"pa\".\"atttypid\" INNER JOIN \"pg_catalog\".\"pg_namespace\" AS \"ptn\" ON \"ptn\".\"oid\" = \"pt\".\"typnamespace\" WHERE (\"pc\".\"relkind\" = 'm') AND (\"pa\".\"attnum\" >= 1) AND (\"pn\".\"nspname\" IN (?)) ORDER BY \"table-schema\" ASC, \"table-name\" ASC, \"database-position\" ASC";

    static final String FOREIGN_KEYS = "SELECT \"fk_ns\".\"nspname\" AS \"fk-table-schema\", \"fk_table\".\"relname\" AS \"fk-table-name\", \"fk_column\".\"attname\" AS \"fk-column-name\", \"pk_ns\".\"nspname\" AS \"pk-table-schema\", \"pk_table\".\"relname\" AS \"pk-table-name\", \"pk_column\".\"attname\" AS \"pk-column-name\" FROM \"pg_constraint\" AS \"c\" INNER JOIN \"pg_class\" AS \"fk_table\" ON \"c\".\"conrelid\" = \"fk_table\".\"oid\" INNER JOIN \"pg_namespace\" AS \"fk_ns\" ON \"c\".\"connamespace\" = \"fk_ns\".\"oid\" INNER JOIN \"pg_attribute\" AS \"fk_column\" ON \"c\".\"conrelid\" = \"fk_column\".\"attrelid\" INNER JOIN \"pg_class\" AS \"pk_table\" ON \"c\".\"confrelid\" = \"pk_table\".\"oid\" INNER JOIN \"pg_namespace\" AS \"pk_ns\" ON \"pk_table\".\"relnamespace\" = \"pk_ns\".\"oid\" INNER JOIN \"pg_attribute\" AS \"pk_column\" ON \"c\".\"confrelid\" = \"pk_column\".\"attrelid\" WHERE fk_ns.nspname !~ '^information_schema|catalog_history|pg_' AND (\"c\".\"contype\" = 'f'::char) AND (\"fk_column\".\"attnum\" = ANY(c.conkey)) AND (\"pk_column\".\"attnum\" = ANY(c.confkey)) AND (\"fk_table\".\"relname\" IN (?)) AND (\"fk_ns\".\"nspname\" IN (?)) ORDER BY \"fk-table-schema\" ASC, \"fk-table-name\" ASC";

    static final String CPU = "\"public\".\"cpu\"";

    static void metabase(Connection conn) throws Exception {
        // "Test connection", then what the connection pool does on each checkout.
        try (Statement statement = conn.createStatement(); ResultSet rs = statement.executeQuery("SELECT 1")) {
            rs.next();
            int type = rs.getMetaData().getColumnType(1);
            check("tests the connection with SELECT 1", rs.getObject(1) instanceof Number && rs.getLong(1) == 1
                && (type == Types.INTEGER || type == Types.BIGINT || type == Types.SMALLINT), type);
        }
        int isolation = conn.getTransactionIsolation();
        conn.setTransactionIsolation(Connection.TRANSACTION_READ_UNCOMMITTED);
        conn.setReadOnly(true);
        conn.setHoldability(ResultSet.CLOSE_CURSORS_AT_COMMIT);
        check("checks a pooled connection out", conn.isValid(0) && isolation == Connection.TRANSACTION_READ_COMMITTED, isolation);

        // Sync: schemas, privileges, tables, the time zone, fields, keys.
        DatabaseMetaData meta = conn.getMetaData();
        List<Map<String, String>> schemas = read(meta.getSchemas());
        check("lists schemas", byName(schemas, "table_schem", "public") != null, schemas);
        Map<String, String> privileges = byName(rows(conn, 0, PRIVILEGES), "table", "cpu");
        check("reads its privileges on the table", privileges != null && "t".equals(privileges.get("select")), privileges);
        List<Map<String, String>> tables = rows(conn, 0, SYNCABLE_TABLES, 0L, "^pg_", "information_schema", "public");
        Map<String, String> cpu = byName(tables, "name", "cpu");
        check("lists syncable tables", cpu != null && "TABLE".equals(cpu.get("type")), tables);
        String timezone = rows(conn, 0, "show timezone").get(0).values().iterator().next();
        check("reads the time zone", "UTC".equals(timezone), timezone);
        check("reads enum types (none)", rows(conn, 0,
            "SELECT nspname, typname FROM pg_type t JOIN pg_namespace n ON n.oid = t.typnamespace WHERE t.oid IN (SELECT DISTINCT enumtypid FROM pg_enum e)").isEmpty(), "");
        Map<String, String> fieldTypes = new HashMap<>();
        for (Map<String, String> field : rows(conn, 0, FIELDS, "public", "public")) {
            if ("cpu".equals(field.get("table-name")) && "f".equals(field.get("pk?"))) {
                fieldTypes.put(field.get("name"), field.get("database-type"));
            }
        }
        check("describes fields with their database types",
            fieldTypes.equals(Map.of("host", "text", "usage", "float8", "n", "int8", "time", "timestamptz")), fieldTypes);
        Map<String, String> jdbcTypes = new HashMap<>();
        for (Map<String, String> column : read(meta.getColumns(null, "public", "cpu", null))) {
            jdbcTypes.put(column.get("column_name"), column.get("type_name"));
        }
        check("reads JDBC columns", jdbcTypes.equals(Map.of("host", "text", "usage", "float8", "n", "int8", "time", "timestamptz")), jdbcTypes);
        check("reads JDBC primary keys (none)", read(meta.getPrimaryKeys(null, "public", "cpu")).isEmpty(), "");
        check("describes foreign keys (none)", rows(conn, 0, FOREIGN_KEYS, "cpu", "public").isEmpty(), "");
        check("reads JDBC imported keys (none)", read(meta.getImportedKeys(null, "public", "cpu")).isEmpty(), "");
        check("reads JDBC indexes (none)", read(meta.getIndexInfo(null, "public", "cpu", false, true)).isEmpty(), "");
        // The tables have no keys, so the machinery under JDBC's key metadata is
        // checked on its own: arrays expanded with their subscripts, and
        // pg_constraint's key columns as arrays.
        List<Map<String, String>> expanded = rows(conn, 0, "SELECT (information_schema._pg_expandarray(e.a)).x AS x, "
            + "(information_schema._pg_expandarray(e.a)).n AS n FROM (SELECT ARRAY[30, 10] AS a) e");
        check("expands an array as JDBC's key metadata does",
            expanded.equals(List.of(Map.of("x", "30", "n", "1"), Map.of("x", "10", "n", "2"))), expanded);
        List<Map<String, String>> keys = rows(conn, 0, "SELECT conkey[2] AS second FROM pg_catalog.pg_constraint "
            + "WHERE conname = 'pg_class_relname_nsp_index' AND 3 = ANY(conkey)");
        check("reads constraints' keys as arrays", keys.equals(List.of(Map.of("second", "3"))), keys);
        List<Map<String, String>> indexKeys = rows(conn, 0, "SELECT indkey[2] AS second, cardinality(indkey) AS columns "
            + "FROM pg_catalog.pg_index WHERE indexrelid = 2663");
        check("reads indexes' keys as arrays", indexKeys.equals(List.of(Map.of("second", "3", "columns", "2"))), indexKeys);
        read(meta.getTablePrivileges(null, "public", "cpu"));
        read(meta.getExportedKeys(null, "public", "cpu"));
        read(meta.getBestRowIdentifier(null, "public", "cpu", DatabaseMetaData.bestRowSession, true));
        check("runs JDBC's privileges, exported keys and row identifiers", true, "");

        // Analysis: a sample of rows and the distinct values of a category.
        List<Map<String, String>> sample = rows(conn, 10000, "-- Metabase\nSELECT " + CPU + ".\"time\" AS \"time\", SUBSTRING(" + CPU
            + ".\"host\", 1, 1234) AS \"substring12345\", " + CPU + ".\"usage\" AS \"usage\", " + CPU + ".\"n\" AS \"n\" FROM " + CPU + " LIMIT 10000");
        check("fingerprints a sample", sample.size() == 2, sample);
        List<Map<String, String>> hosts = rows(conn, 1000, "-- Metabase\nSELECT " + CPU + ".\"host\" AS \"host\" FROM " + CPU + " GROUP BY " + CPU
            + ".\"host\" ORDER BY " + CPU + ".\"host\" ASC LIMIT 1000");
        check("scans field values", hosts.size() == 2 && "a".equals(hosts.get(0).get("host")) && "b".equals(hosts.get(1).get("host")), hosts);

        // The query builder: raw rows, a count by month, a filtered average.
        List<Map<String, String>> raw = rows(conn, 2000, "-- Metabase:: userID: 1 queryType: MBQL queryHash: 5e0c\nSELECT " + CPU + ".\"host\" AS \"host\", "
            + CPU + ".\"usage\" AS \"usage\", " + CPU + ".\"n\" AS \"n\", " + CPU + ".\"time\" AS \"time\" FROM " + CPU + " LIMIT 2000");
        check("shows a table's rows", raw.size() == 2, raw);
        String month = "DATE_TRUNC('month', " + CPU + ".\"time\")";
        List<Map<String, String>> byMonth = rows(conn, 10000, "-- Metabase:: userID: 1 queryType: MBQL queryHash: 8a41\nSELECT " + month
            + " AS \"time\", COUNT(*) AS \"count\" FROM " + CPU + " GROUP BY " + month + " ORDER BY " + month + " ASC");
        check("charts a count by month", byMonth.size() == 1 && "2".equals(byMonth.get(0).get("count"))
            && byMonth.get(0).get("time").startsWith("2023-11-01 00:00:00"), byMonth);
        String filtered = "SELECT " + CPU + ".\"host\" AS \"host\", AVG(" + CPU + ".\"usage\") AS \"avg\" FROM " + CPU + " WHERE " + CPU
            + ".\"host\" = ? GROUP BY " + CPU + ".\"host\" ORDER BY " + CPU + ".\"host\" ASC";
        try (PreparedStatement statement = conn.prepareStatement(filtered)) {
            check("counts a statement's parameters", statement.getParameterMetaData().getParameterCount() == 1, "");
        }
        // pgjdbc turns a statement run five times into a named one with binary results.
        for (int run = 1; run <= 6; run++) {
            List<Map<String, String>> average = rows(conn, 10000, filtered, "b");
            if (average.size() != 1 || Double.parseDouble(average.get(0).get("avg")) != 3.0) {
                check("filters by a category, run " + run, false, average);
            }
        }
        check("filters by a category, six times", true, "");
        List<Map<String, String>> inRange = rows(conn, 10000, "SELECT COUNT(*) AS \"count\" FROM " + CPU + " WHERE (" + CPU + ".\"time\" >= ?) AND ("
            + CPU + ".\"time\" < ?)", OffsetDateTime.parse("2023-11-14T00:00:00Z"), OffsetDateTime.parse("2023-11-15T00:00:00Z"));
        check("filters by a time range", "2".equals(inRange.get(0).get("count")), inRange);
        conn.setTransactionIsolation(Connection.TRANSACTION_READ_COMMITTED);
        check("checks the connection back in", conn.isValid(0), "");
    }
}

//! The statements that create, rename and drop schemas, tables and views:
//! what dbt runs to build its models, and what BI tools run to save a query.
//!
//! They are planned like any statement (DataFusion's DDL plans, and
//! [`RenameRelation`] and [`DropDatabase`] nodes for `ALTER ... RENAME TO`
//! and `DROP DATABASE`, which DataFusion has no plan for) and carried out
//! when the plan is executed, so a client that prepares one runs it once.
//! Measurements come into being with writes: `DROP TABLE` and `DROP
//! DATABASE` remove them through the write path, and `RENAME` refuses them.

use std::fmt;
use std::sync::Arc;

use super::table::TableWriter;
use datafusion::common::{DFSchema, DFSchemaRef, SchemaReference, TableReference};
use datafusion::dataframe::DataFrame;
use datafusion::execution::context::SessionState;
use datafusion::logical_expr::{
    CreateCatalogSchema, CreateMemoryTable, CreateView, DdlStatement, DropCatalogSchema, DropTable, DropView, Expr,
    Extension, LogicalPlan, UserDefinedLogicalNodeCore,
};
use datafusion::sql::parser::{DFParser, Statement as DfStatement};
use datafusion::sql::sqlparser::ast::{AlterTableOperation, ObjectName, RenameTableNameKind, Statement};
use datafusion::sql::sqlparser::dialect::PostgreSqlDialect;
use futures::StreamExt;

use super::{QueryError, SCHEMA};
use crate::catalog::relations::{Relation, RelationError, RelationFiles, RelationKind, RelationStore};
use crate::catalog::Catalog;
use crate::errors::ErrorKind;

/// A plan node for a statement DataFusion has no plan for: no inputs, no
/// expressions, an empty schema; `explain` writes its line in EXPLAIN.
macro_rules! statement_node {
    ($node:ident, $explain:expr) => {
        impl UserDefinedLogicalNodeCore for $node {
            fn name(&self) -> &str {
                stringify!($node)
            }

            fn inputs(&self) -> Vec<&LogicalPlan> {
                Vec::new()
            }

            fn schema(&self) -> &DFSchemaRef {
                &self.schema
            }

            fn expressions(&self) -> Vec<Expr> {
                Vec::new()
            }

            fn fmt_for_explain(&self, f: &mut fmt::Formatter) -> fmt::Result {
                ($explain)(self, f)
            }

            fn with_exprs_and_inputs(
                &self,
                _exprs: Vec<Expr>,
                _inputs: Vec<LogicalPlan>,
            ) -> datafusion::common::Result<Self> {
                Ok(self.clone())
            }
        }
    };
}

/// `ALTER TABLE <name> RENAME TO <new name>`, for tables and views alike (as
/// dbt sends it; `ALTER VIEW ... RENAME` does not parse).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub(crate) struct RenameRelation {
    from: TableReference,
    to: String,
    if_exists: bool,
    schema: DFSchemaRef,
}

// The (empty) schema takes no part in the order.
impl PartialOrd for RenameRelation {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        (&self.from, &self.to, self.if_exists).partial_cmp(&(&other.from, &other.to, other.if_exists))
    }
}

statement_node!(RenameRelation, |node: &RenameRelation, f: &mut fmt::Formatter| write!(
    f,
    "RenameRelation: {} to {}",
    node.from, node.to
));

/// `DROP DATABASE [IF EXISTS] <name>`: its measurements with their rows and
/// files, and the schemas, tables and views SQL made in it.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub(crate) struct DropDatabase {
    name: String,
    if_exists: bool,
    schema: DFSchemaRef,
}

// The (empty) schema takes no part in the order.
impl PartialOrd for DropDatabase {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        (&self.name, self.if_exists).partial_cmp(&(&other.name, other.if_exists))
    }
}

statement_node!(DropDatabase, |node: &DropDatabase, f: &mut fmt::Formatter| write!(f, "DropDatabase: {}", node.name));

/// The plan of `DROP DATABASE`, with the database it names (a name as it
/// is, dots and all).
pub(crate) fn drop_database_plan(names: &[ObjectName], if_exists: bool) -> Result<(String, LogicalPlan), QueryError> {
    let [name] = names else {
        return Err(QueryError::Unsupported("DROP DATABASE takes one database".into()));
    };
    let name = name_parts(name).join(".");
    let node = DropDatabase { name: name.clone(), if_exists, schema: Arc::new(DFSchema::empty()) };
    Ok((name, LogicalPlan::Extension(Extension { node: Arc::new(node) })))
}

/// The plan of `ALTER TABLE ... RENAME TO ...`, or `None` for any other
/// statement. Other `ALTER TABLE` forms are refused.
pub(crate) fn alter_plan(statement: &Statement) -> Result<Option<LogicalPlan>, QueryError> {
    let (name, if_exists, operations) = match statement {
        Statement::AlterTable(alter) => (&alter.name, alter.if_exists, &alter.operations),
        _ => return Ok(None),
    };
    let [AlterTableOperation::RenameTable { table_name }] = operations.as_slice() else {
        return Err(QueryError::Unsupported(
            "ALTER TABLE supports RENAME TO only: a measurement's columns come with its writes".into(),
        ));
    };
    let (RenameTableNameKind::To(to) | RenameTableNameKind::As(to)) = table_name;
    let to = name_parts(to).pop().unwrap_or_default();
    let node = RenameRelation { from: reference(name), to, if_exists, schema: Arc::new(DFSchema::empty()) };
    Ok(Some(LogicalPlan::Extension(Extension { node: Arc::new(node) })))
}

/// The parts of a name as SQL means them: unquoted identifiers fold to lower
/// case, quoted ones are kept as written.
pub fn name_parts(name: &ObjectName) -> Vec<String> {
    name.0.iter().map(|p| p.as_ident().map_or_else(|| p.to_string(), identifier)).collect()
}

/// `name` as SQL text that means exactly that name, whatever it holds
/// (dots, capitals, quotes, keywords): double-quoted, inner quotes doubled.
/// How a name travels inside SQL the server generates.
pub fn quote_identifier(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

/// An identifier as SQL means it (see [`name_parts`]).
pub fn identifier(ident: &datafusion::sql::sqlparser::ast::Ident) -> String {
    match ident.quote_style {
        Some(_) => ident.value.clone(),
        None => ident.value.to_lowercase(),
    }
}

fn reference(name: &ObjectName) -> TableReference {
    match name_parts(name).as_slice() {
        [catalog, schema, table] => TableReference::full(catalog.as_str(), schema.as_str(), table.as_str()),
        [schema, table] => TableReference::partial(schema.as_str(), table.as_str()),
        [table] => TableReference::bare(table.as_str()),
        _ => TableReference::bare(name.to_string()),
    }
}

/// Whether a plan is one of the statements this module carries out.
pub(crate) fn is_catalog_statement(plan: &LogicalPlan) -> bool {
    match plan {
        LogicalPlan::Ddl(ddl) => matches!(
            ddl,
            DdlStatement::CreateCatalogSchema(_)
                | DdlStatement::CreateMemoryTable(_)
                | DdlStatement::CreateView(_)
                | DdlStatement::DropTable(_)
                | DdlStatement::DropView(_)
                | DdlStatement::DropCatalogSchema(_)
        ),
        LogicalPlan::Extension(e) => e.node.as_any().is::<RenameRelation>() || e.node.as_any().is::<DropDatabase>(),
        _ => false,
    }
}

/// The command tag Postgres answers a catalog statement with.
pub fn command_tag(plan: &LogicalPlan) -> Option<&'static str> {
    Some(match plan {
        LogicalPlan::Ddl(DdlStatement::CreateCatalogSchema(_)) => "CREATE SCHEMA",
        LogicalPlan::Ddl(DdlStatement::CreateMemoryTable(_)) => "SELECT",
        LogicalPlan::Ddl(DdlStatement::CreateView(_)) => "CREATE VIEW",
        LogicalPlan::Ddl(DdlStatement::DropTable(_)) => "DROP TABLE",
        LogicalPlan::Ddl(DdlStatement::DropView(_)) => "DROP VIEW",
        LogicalPlan::Ddl(DdlStatement::DropCatalogSchema(_)) => "DROP SCHEMA",
        LogicalPlan::Extension(e) if e.node.as_any().is::<RenameRelation>() => "ALTER TABLE",
        LogicalPlan::Extension(e) if e.node.as_any().is::<DropDatabase>() => "DROP DATABASE",
        _ => return None,
    })
}

fn relation_error(error: RelationError) -> QueryError {
    match error {
        error @ RelationError::NotFound(_) => QueryError::UnknownTable(error.to_string()),
        other => QueryError::refused(&other),
    }
}

/// Carries out catalog statements for one database.
pub(crate) struct CatalogStatements<'a> {
    pub(crate) database: &'a str,
    pub(crate) catalog: &'a dyn Catalog,
    pub(crate) relations: &'a RelationStore,
    pub(crate) state: SessionState,
    /// The write path, which drops measurements; `None` where this process
    /// takes no writes.
    pub(crate) writer: Option<&'a Arc<dyn TableWriter>>,
}

impl CatalogStatements<'_> {
    /// The schema and name of a relation named in this database.
    fn locate(&self, name: &TableReference) -> Result<(String, String), QueryError> {
        if let Some(catalog) = name.catalog() {
            if catalog != self.database {
                return Err(QueryError::Unsupported(format!(
                    "'{name}' is in database '{catalog}'; connect to it to change it (this connection is to '{}')",
                    self.database
                )));
            }
        }
        Ok((name.schema().unwrap_or(SCHEMA).to_owned(), name.table().to_owned()))
    }

    fn is_measurement(&self, schema: &str, name: &str) -> bool {
        schema == SCHEMA && self.catalog.table_schema(self.database, name).is_some()
    }

    fn measurement_refused(&self, name: &str, what: &str) -> QueryError {
        QueryError::Unsupported(format!(
            "'{name}' is a measurement of database '{}': measurements cannot be {what}",
            self.database
        ))
    }

    /// Carries out the statement; returns the rows it wrote (CREATE TABLE AS).
    pub(crate) async fn run(&self, plan: LogicalPlan) -> Result<usize, QueryError> {
        match plan {
            LogicalPlan::Ddl(DdlStatement::CreateCatalogSchema(CreateCatalogSchema {
                schema_name,
                if_not_exists,
                ..
            })) => {
                let schema = self.schema_name(&schema_name)?;
                self.relations.create_schema(self.database, &schema, if_not_exists).await.map_err(relation_error)?;
                Ok(0)
            }
            LogicalPlan::Ddl(DdlStatement::DropCatalogSchema(DropCatalogSchema {
                name, if_exists, cascade, ..
            })) => {
                let schema = match &name {
                    SchemaReference::Bare { schema } => schema.to_string(),
                    SchemaReference::Full { schema, catalog } => {
                        self.locate(&TableReference::full(catalog.as_ref(), schema.as_ref(), ""))?;
                        schema.to_string()
                    }
                };
                let dropped = self
                    .relations
                    .drop_schema(self.database, &schema, if_exists, cascade)
                    .await
                    .map_err(relation_error)?;
                for relation in dropped {
                    self.remove_files(&relation).await;
                }
                Ok(0)
            }
            LogicalPlan::Ddl(DdlStatement::CreateView(CreateView { temporary: true, .. }))
            | LogicalPlan::Ddl(DdlStatement::CreateMemoryTable(CreateMemoryTable { temporary: true, .. })) => {
                Err(QueryError::Unsupported("temporary tables and views are not supported".into()))
            }
            LogicalPlan::Ddl(DdlStatement::CreateView(CreateView { name, or_replace, definition, .. })) => {
                let (schema, view) = self.locate(&name)?;
                let sql = definition
                    .as_deref()
                    .and_then(view_query)
                    .ok_or_else(|| QueryError::Plan(format!("cannot read the query of view '{name}'")))?;
                let taken = self.is_measurement(&schema, &view);
                let relation = Relation { schema, name: view, kind: RelationKind::View { sql } };
                let replaced = self
                    .relations
                    .create(self.database, relation, or_replace, taken, None)
                    .await
                    .map_err(relation_error)?;
                if let Some(old) = replaced {
                    self.remove_files(&old).await;
                }
                Ok(0)
            }
            LogicalPlan::Ddl(DdlStatement::CreateMemoryTable(CreateMemoryTable {
                name,
                input,
                if_not_exists,
                or_replace,
                ..
            })) => {
                let (schema, table) = self.locate(&name)?;
                if matches!(input.as_ref(), LogicalPlan::EmptyRelation(_)) {
                    return Err(QueryError::Unsupported(
                        "CREATE TABLE without AS: measurements come into being with their first write; \
                         CREATE TABLE ... AS SELECT makes a table from a query"
                            .into(),
                    ));
                }
                let taken = self.is_measurement(&schema, &table);
                let exists = taken || self.relations.get(self.database, &schema, &table).is_some();
                if exists && if_not_exists {
                    return Ok(0);
                }
                if exists && !or_replace {
                    return Err(relation_error(RelationError::AlreadyExists(format!("{schema}.{table}"))));
                }
                let started = std::time::SystemTime::now();
                let (id, rows) = self.write_table(Arc::unwrap_or_clone(input)).await?;
                let relation = Relation { schema, name: table, kind: RelationKind::Table { id: id.clone() } };
                match self.relations.create(self.database, relation, or_replace, taken, Some(started)).await {
                    Ok(replaced) => {
                        if let Some(old) = replaced {
                            self.remove_files(&old).await;
                        }
                        Ok(rows)
                    }
                    // The stored definitions may name the new table: its files
                    // stay (the orphan sweep takes them if they do not).
                    Err(e @ (RelationError::OutcomeUnknown { .. } | RelationError::Unavailable(_))) => {
                        Err(relation_error(e))
                    }
                    Err(e) => {
                        self.relations.files().remove(self.database, &id).await;
                        Err(relation_error(e))
                    }
                }
            }
            LogicalPlan::Ddl(DdlStatement::DropTable(DropTable { name, if_exists, .. })) => {
                self.drop_relation(&name, if_exists, false).await
            }
            LogicalPlan::Ddl(DdlStatement::DropView(DropView { name, if_exists, .. })) => {
                self.drop_relation(&name, if_exists, true).await
            }
            LogicalPlan::Extension(extension) => {
                if let Some(drop) = extension.node.as_any().downcast_ref::<DropDatabase>() {
                    return self.drop_database(drop).await;
                }
                let Some(rename) = extension.node.as_any().downcast_ref::<RenameRelation>() else {
                    return Err(QueryError::Unsupported(format!(
                        "{} is not a catalog statement",
                        extension.node.name()
                    )));
                };
                let (schema, from) = self.locate(&rename.from)?;
                if self.is_measurement(&schema, &from) {
                    return Err(self.measurement_refused(&from, "renamed"));
                }
                if self.relations.get(self.database, &schema, &from).is_none() {
                    if rename.if_exists {
                        return Ok(0);
                    }
                    return Err(relation_error(RelationError::NotFound(format!("{schema}.{from}"))));
                }
                let taken = self.is_measurement(&schema, &rename.to);
                self.relations
                    .rename(self.database, &schema, &from, &rename.to, taken)
                    .await
                    .map_err(relation_error)?;
                Ok(0)
            }
            other => Err(QueryError::Unsupported(format!("{} is not supported", other.display()))),
        }
    }

    /// The write path, or why this process cannot `what`.
    fn writer(&self, what: &str) -> Result<&Arc<dyn TableWriter>, QueryError> {
        self.writer.ok_or_else(|| QueryError::read_only(what))
    }

    /// `DROP DATABASE`: each measurement through the write path, then the
    /// relations SQL made. The measurements go in a task of their own, so
    /// that a client going away or a query deadline does not stop them
    /// half way; a failure leaves the rest, and running it again finishes.
    async fn drop_database(&self, drop: &DropDatabase) -> Result<usize, QueryError> {
        let database = drop.name.as_str();
        let measurements = self.catalog.tables(database);
        let has_relations =
            !self.relations.schemas(database).is_empty() || !self.relations.relations(database, SCHEMA).is_empty();
        if measurements.is_empty() && !has_relations {
            return if drop.if_exists { Ok(0) } else { Err(QueryError::UnknownDatabase(database.to_owned())) };
        }
        if !measurements.is_empty() {
            let writer = Arc::clone(self.writer("DROP DATABASE")?);
            if !self.catalog.records_deletes() {
                return Err(QueryError::Unsupported(format!(
                    "DROP DATABASE {database}: the shared catalog does not drop measurements yet"
                )));
            }
            let name = database.to_owned();
            let dropped = tokio::spawn(async move {
                for table in measurements {
                    writer.drop_table(&name, &table).await?;
                }
                Ok::<_, QueryError>(())
            });
            dropped.await.map_err(|e| QueryError::Internal(format!("the drop's task: {e}")))??;
        }
        for relation in self.relations.drop_database(database).await.map_err(relation_error)? {
            self.relations.release(database, &relation).await;
        }
        self.catalog.drop_database(database).await.map_err(|e| QueryError::refused(&e))?;
        Ok(0)
    }

    /// `DROP TABLE` or `DROP VIEW`; as in Postgres, each drops only its kind.
    /// A measurement goes through the write path, with its rows and files.
    async fn drop_relation(&self, name: &TableReference, if_exists: bool, view: bool) -> Result<usize, QueryError> {
        let (schema, relation) = self.locate(name)?;
        if self.is_measurement(&schema, &relation) {
            if view {
                return Err(not_of_kind(&schema, &relation, "a view", "DROP TABLE"));
            }
            let dropped = self.writer("DROP TABLE")?.drop_table(self.database, &relation).await?;
            if !dropped && !if_exists {
                return Err(relation_error(RelationError::NotFound(format!("{schema}.{relation}"))));
            }
            return Ok(0);
        }
        let Some(existing) = self.relations.get(self.database, &schema, &relation) else {
            if if_exists {
                return Ok(0);
            }
            return Err(relation_error(RelationError::NotFound(format!("{schema}.{relation}"))));
        };
        let is_view = matches!(existing.kind, RelationKind::View { .. });
        if is_view != view {
            let (is, use_instead) = if is_view { ("a table", "DROP VIEW") } else { ("a view", "DROP TABLE") };
            return Err(not_of_kind(&schema, &relation, is, use_instead));
        }
        if let Some(dropped) =
            self.relations.drop_relation(self.database, &schema, &relation).await.map_err(relation_error)?
        {
            self.remove_files(&dropped).await;
        }
        Ok(0)
    }

    fn schema_name(&self, name: &str) -> Result<String, QueryError> {
        match name.split_once('.') {
            None => Ok(name.trim_matches('"').to_owned()),
            Some((catalog, schema)) => {
                let catalog = catalog.trim_matches('"');
                self.locate(&TableReference::full(catalog, "", ""))?;
                Ok(schema.trim_matches('"').to_owned())
            }
        }
    }

    /// Runs the query and writes its rows as the Parquet file of a new
    /// table; returns the table's id and the rows.
    async fn write_table(&self, input: LogicalPlan) -> Result<(String, usize), QueryError> {
        let frame = DataFrame::new(self.state.clone(), input);
        let schema = Arc::new(frame.schema().as_arrow().clone());
        let stream = frame.execute_stream().await.map_err(|e| QueryError::from_datafusion(e, true))?;
        let batches =
            stream.map(|batch| batch.map_err(|e| TableWriteError::Query(QueryError::from_datafusion(e, false))));
        let id = RelationFiles::new_id();
        match self.relations.files().write(self.database, &id, schema, batches).await {
            Ok(rows) => Ok((id, rows)),
            Err(error) => {
                self.relations.files().remove(self.database, &id).await;
                Err(match error {
                    TableWriteError::Query(e) => e,
                    // A store that does not answer is worth a retry; a disk fault is not.
                    TableWriteError::Storage(e @ crate::storage::StorageError::ObjectStore { .. }) => {
                        QueryError::Write {
                            message: format!("writing the table's file: {e}; retry shortly"),
                            sqlstate: "57P03",
                            kind: ErrorKind::Unavailable,
                            bad_row: None,
                        }
                    }
                    TableWriteError::Storage(e) => QueryError::Write {
                        message: format!("writing the table's file: {e}"),
                        sqlstate: "58030",
                        kind: ErrorKind::Internal,
                        bad_row: None,
                    },
                })
            }
        }
    }

    async fn remove_files(&self, relation: &Relation) {
        self.relations.release(self.database, relation).await;
    }
}

/// `DROP TABLE` on a view, or `DROP VIEW` on a table (wrong_object_type).
fn not_of_kind(schema: &str, relation: &str, is: &str, use_instead: &str) -> QueryError {
    QueryError::Write {
        message: format!("\"{schema}.{relation}\" is not {is}; use {use_instead}"),
        sqlstate: "42809",
        kind: ErrorKind::Invalid,
        bad_row: None,
    }
}

/// Why writing a table's file failed: its query, or the storage.
enum TableWriteError {
    Query(QueryError),
    Storage(crate::storage::StorageError),
}

impl From<crate::storage::StorageError> for TableWriteError {
    fn from(error: crate::storage::StorageError) -> Self {
        TableWriteError::Storage(error)
    }
}

/// The query of a `CREATE VIEW` statement.
fn view_query(definition: &str) -> Option<String> {
    let mut statements = DFParser::parse_sql_with_dialect(definition, &PostgreSqlDialect {}).ok()?;
    match statements.pop_front()? {
        DfStatement::Statement(statement) => match *statement {
            Statement::CreateView(view) => Some(view.query.to_string()),
            _ => None,
        },
        _ => None,
    }
}

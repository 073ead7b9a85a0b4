#!/usr/bin/env python3
"""Writes Tests/DriftCorpus: one shop schema as drizzle-kit writes it in each snapshot version Tally reads.

v5 (drizzle-kit 0.17-0.19: dialect "pg", tables and enums keyed by name, index columns as names, enum values
as an object), v6 (tables and enums keyed "schema.name", enum values as a list), v7 (0.21 onwards: index columns
as objects, check constraints, identity columns) and v8 (1.0: the <timestamp>_<name>/ layout, one flat `ddl`
list). Every folder holds the same migration SQL, so `tally migrate up` then `tally db drift` must find nothing.
Run it again after changing the schema here; the test reads what it wrote.
"""
import json, os

HERE = os.path.dirname(os.path.abspath(__file__))

SQL = '''CREATE SCHEMA "billing";
--> statement-breakpoint
CREATE TYPE "public"."order_status" AS ENUM('pending', 'paid', 'shipped');
--> statement-breakpoint
CREATE TABLE IF NOT EXISTS "users" (
	"id" uuid PRIMARY KEY DEFAULT gen_random_uuid() NOT NULL,
	"email" varchar(255) NOT NULL,
	"name" text,
	"created_at" timestamp with time zone DEFAULT now() NOT NULL,
	CONSTRAINT "users_email_unique" UNIQUE("email")
);
--> statement-breakpoint
CREATE TABLE IF NOT EXISTS "orders" (
	"id" serial PRIMARY KEY NOT NULL,
	"user_id" uuid NOT NULL,
	"status" "order_status" DEFAULT 'pending' NOT NULL,
	"total" numeric(10, 2) DEFAULT '0' NOT NULL,
	"note" text,
	"tags" text[] DEFAULT '{}'::text[] NOT NULL,
	CONSTRAINT "orders_total_nonnegative" CHECK ("orders"."total" >= 0)
);
--> statement-breakpoint
CREATE TABLE IF NOT EXISTS "order_items" (
	"order_id" integer NOT NULL,
	"sku" text NOT NULL,
	"quantity" integer DEFAULT 1 NOT NULL,
	CONSTRAINT "order_items_order_id_sku_pk" PRIMARY KEY("order_id","sku")
);
--> statement-breakpoint
CREATE TABLE IF NOT EXISTS "billing"."invoices" (
	"id" bigserial PRIMARY KEY NOT NULL,
	"order_id" integer,
	"amount" integer NOT NULL,
	"paid" boolean DEFAULT false NOT NULL
);
--> statement-breakpoint
ALTER TABLE "orders" ADD CONSTRAINT "orders_user_id_users_id_fk" FOREIGN KEY ("user_id") REFERENCES "public"."users"("id") ON DELETE cascade ON UPDATE no action;
--> statement-breakpoint
ALTER TABLE "order_items" ADD CONSTRAINT "order_items_order_id_orders_id_fk" FOREIGN KEY ("order_id") REFERENCES "public"."orders"("id") ON DELETE cascade ON UPDATE cascade;
--> statement-breakpoint
ALTER TABLE "billing"."invoices" ADD CONSTRAINT "invoices_order_id_orders_id_fk" FOREIGN KEY ("order_id") REFERENCES "public"."orders"("id") ON DELETE set null ON UPDATE no action;
--> statement-breakpoint
CREATE INDEX IF NOT EXISTS "orders_user_idx" ON "orders" USING btree ("user_id");
--> statement-breakpoint
CREATE INDEX IF NOT EXISTS "orders_note_lower_idx" ON "orders" USING btree (lower("note")) WHERE "orders"."status" <> 'pending';
--> statement-breakpoint
CREATE UNIQUE INDEX IF NOT EXISTS "invoices_order_idx" ON "billing"."invoices" USING btree ("order_id" DESC NULLS LAST);
'''

# The schema, once: (schema, table, columns, composite pk, uniques, checks, fks, indexes).
# A column: name, type, notNull, primaryKey, default (SQL as drizzle-kit writes it), enum schema or None.
TABLES = [
    ("public", "users",
     [("id", "uuid", True, True, "gen_random_uuid()", None), ("email", "varchar(255)", True, False, None, None),
      ("name", "text", False, False, None, None), ("created_at", "timestamp with time zone", True, False, "now()", None)],
     None, [("users_email_unique", ["email"])], [], [], []),
    ("public", "orders",
     [("id", "serial", True, True, None, None), ("user_id", "uuid", True, False, None, None),
      ("status", "order_status", True, False, "'pending'", "public"), ("total", "numeric(10, 2)", True, False, "'0'", None),
      ("note", "text", False, False, None, None), ("tags", "text[]", True, False, "'{}'::text[]", None)],
     None, [], [("orders_total_nonnegative", '"orders"."total" >= 0')],
     [("orders_user_id_users_id_fk", ["user_id"], "public", "users", ["id"], "cascade", "no action")],
     [("orders_user_idx", [("user_id", False, True, "last")], False, None),
      ("orders_note_lower_idx", [('lower("note")', True, True, "last")], False, '"orders"."status" <> \'pending\'')]),
    ("public", "order_items",
     [("order_id", "integer", True, False, None, None), ("sku", "text", True, False, None, None),
      ("quantity", "integer", True, False, 1, None)],
     ("order_items_order_id_sku_pk", ["order_id", "sku"]), [], [],
     [("order_items_order_id_orders_id_fk", ["order_id"], "public", "orders", ["id"], "cascade", "cascade")], []),
    ("billing", "invoices",
     [("id", "bigserial", True, True, None, None), ("order_id", "integer", False, False, None, None),
      ("amount", "integer", True, False, None, None), ("paid", "boolean", True, False, False, None)],
     None, [], [],
     [("invoices_order_id_orders_id_fk", ["order_id"], "public", "orders", ["id"], "set null", "no action")],
     [("invoices_order_idx", [("order_id", False, False, "last")], True, None)]),
]
ENUMS = [("public", "order_status", ["pending", "paid", "shipped"])]


def legacy(version):
    tables = {}
    for schema, name, columns, pk, uniques, checks, fks, indexes in TABLES:
        cols = {}
        for cname, ctype, not_null, primary, default, type_schema in columns:
            c = {"name": cname, "type": ctype, "primaryKey": primary, "notNull": not_null}
            if default is not None:
                c["default"] = default
            if type_schema and version == 7:
                c["typeSchema"] = type_schema
            cols[cname] = c
        index_objects = {}
        for iname, icolumns, unique, where in indexes:
            if version == 7:
                cols_json = [{"expression": e, "isExpression": x, "asc": asc, "nulls": nulls} for e, x, asc, nulls in icolumns]
                index_objects[iname] = {"name": iname, "columns": cols_json, "isUnique": unique, "concurrently": False,
                                        "method": "btree", "with": {}}
            else:
                if any(x or not asc for _, x, asc, _ in icolumns):
                    continue  # versions 5 and 6 store plain column lists; expression indexes came with 7
                index_objects[iname] = {"name": iname, "columns": [e for e, _, _, _ in icolumns], "isUnique": unique}
            if where:
                index_objects[iname]["where"] = where
        fk_objects = {fname: {"name": fname, "tableFrom": name, "tableTo": to_table, "columnsFrom": cf, "columnsTo": ct,
                              "onDelete": od, "onUpdate": ou} | ({"schemaTo": to_schema} if version == 7 else {})
                      for fname, cf, to_schema, to_table, ct, od, ou in fks}
        table = {"name": name, "schema": "" if schema == "public" else schema, "columns": cols, "indexes": index_objects,
                 "foreignKeys": fk_objects,
                 "compositePrimaryKeys": {pk[0]: {"name": pk[0], "columns": pk[1]}} if pk else {},
                 "uniqueConstraints": {u: {"name": u, "nullsNotDistinct": False, "columns": c} for u, c in uniques}}
        if version == 7:
            table["checkConstraints"] = {c: {"name": c, "value": v} for c, v in checks}
            table["policies"] = {}
            table["isRLSEnabled"] = False
        tables[name if version == 5 else f"{schema}.{name}"] = table
    enums = {}
    for schema, name, values in ENUMS:
        if version == 5:
            enums[name] = {"name": name, "values": {v: v for v in values}}
        else:
            enums[f"{schema}.{name}"] = {"name": name, "schema": schema, "values": values}
    return {"id": f"00000000-0000-4000-8000-00000000000{version}", "prevId": "00000000-0000-0000-0000-000000000000",
            "version": str(version), "dialect": "pg" if version == 5 else "postgresql", "tables": tables, "enums": enums,
            "schemas": {"billing": "billing"}, "_meta": {"columns": {}, "schemas": {}, "tables": {}}}


def entities():
    ddl = [{"entityType": "schemas", "name": "billing"}]
    for schema, name, values in ENUMS:
        ddl.append({"entityType": "enums", "schema": schema, "name": name, "values": values})
    for schema, name, columns, pk, uniques, checks, fks, indexes in TABLES:
        ddl.append({"entityType": "tables", "schema": schema, "name": name, "isRlsEnabled": False})
    for schema, name, columns, pk, uniques, checks, fks, indexes in TABLES:
        for cname, ctype, not_null, primary, default, type_schema in columns:
            dims = ctype.count("[]")
            d = None
            if default is not None:
                if isinstance(default, bool):
                    d = {"value": "true" if default else "false", "type": "boolean"}
                elif isinstance(default, int):
                    d = {"value": str(default), "type": "number"}
                elif default.startswith("'") and default.endswith("'"):
                    d = {"value": default[1:-1], "type": "string"}
                elif default.startswith("'{"):
                    d = {"value": "{}", "type": "array"}
                else:
                    d = {"value": default, "type": "func"}
            ddl.append({"entityType": "columns", "schema": schema, "table": name, "name": cname,
                        "type": ctype.replace("[]", ""), "typeSchema": type_schema, "notNull": not_null,
                        "dimensions": dims, "default": d, "generated": None, "identity": None})
        keyed = pk or (f"{name}_pkey", [c[0] for c in columns if c[3]])
        ddl.append({"entityType": "pks", "schema": schema, "table": name, "name": keyed[0], "nameExplicit": pk is not None,
                    "columns": keyed[1]})
        for u, c in uniques:
            ddl.append({"entityType": "uniques", "schema": schema, "table": name, "name": u, "nameExplicit": True,
                        "columns": c, "nullsNotDistinct": False})
        for c, v in checks:
            ddl.append({"entityType": "checks", "schema": schema, "table": name, "name": c, "value": v})
        for fname, cf, to_schema, to_table, ct, od, ou in fks:
            ddl.append({"entityType": "fks", "schema": schema, "table": name, "name": fname, "nameExplicit": True,
                        "columns": cf, "schemaTo": to_schema, "tableTo": to_table, "columnsTo": ct,
                        "onDelete": od.upper(), "onUpdate": ou.upper()})
        for iname, icolumns, unique, where in indexes:
            ddl.append({"entityType": "indexes", "schema": schema, "table": name, "name": iname, "nameExplicit": True,
                        "columns": [{"value": e, "isExpression": x, "asc": asc, "nullsFirst": nulls == "first", "opclass": None}
                                    for e, x, asc, nulls in icolumns],
                        "isUnique": unique, "where": where, "with": "", "method": "btree", "concurrently": False})
    return {"version": "8", "dialect": "postgres", "id": "00000000-0000-4000-8000-000000000008", "prevIds": [],
            "ddl": ddl, "renames": []}


def write(path, text):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "w") as f:
        f.write(text)


for version in (5, 6, 7):
    sql = SQL
    if version != 7:
        # Before version 7 an expression index was not in the snapshot: neither is it in these folders' SQL.
        # Nor were check constraints (version 7 added them).
        sql = "\n--> statement-breakpoint\n".join(
            s for s in SQL.split("\n--> statement-breakpoint\n") if "orders_note_lower_idx" not in s and "invoices_order_idx" not in s)
        sql = sql.replace(',\n\tCONSTRAINT "orders_total_nonnegative" CHECK ("orders"."total" >= 0)', "")
    folder = os.path.join(HERE, f"v{version}-shop")
    write(os.path.join(folder, "0000_shop.sql"), sql)
    write(os.path.join(folder, "meta", "_journal.json"), json.dumps(
        {"version": str(version), "dialect": "pg" if version == 5 else "postgresql",
         "entries": [{"idx": 0, "version": str(version), "when": 1733300000000, "tag": "0000_shop", "breakpoints": True}]},
        indent=2) + "\n")
    write(os.path.join(folder, "meta", "0000_snapshot.json"), json.dumps(legacy(version), indent=2) + "\n")

write(os.path.join(HERE, "v8-shop", "20241204120000_shop", "migration.sql"), SQL)
write(os.path.join(HERE, "v8-shop", "20241204120000_shop", "snapshot.json"), json.dumps(entities(), indent=2) + "\n")

-- granttrail schema, version 11 (additive): the SHA-256 of each object's decompressed content,
-- as CloudTrail's digests list it, when the read that stored the object hashed it (the Lambda
-- always does, `ingest --verify` does). A digest that arrives later is checked against it
-- without reading the object again. Documented in docs/schema.md.
ALTER TABLE objects ADD COLUMN content_sha256 BLOB;

-- description: {table} has exactly the contract's columns and types (prism_assets/schemas.py)
-- blocking: true
WITH contract AS (
    SELECT column_name, data_type FROM information_schema.columns WHERE table_name = 'contract_{table}'
), actual AS (
    SELECT column_name, data_type FROM information_schema.columns WHERE table_name = '{table}'
)
SELECT coalesce(contract.column_name, actual.column_name) AS column_name,
       contract.data_type AS contract_type,
       actual.data_type AS actual_type
FROM contract FULL OUTER JOIN actual ON contract.column_name = actual.column_name
WHERE contract.data_type IS DISTINCT FROM actual.data_type

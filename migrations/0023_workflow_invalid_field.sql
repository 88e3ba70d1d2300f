-- A workflow's validation errors name their field apart from the problem (issue 13).
--
-- The submit and append functions (0016, 0018) report a caller's mistake by calling
-- ordinaut_workflow_invalid('field: reason'). The error keeps that message and its
-- SQLSTATE (22023, invalid_parameter_value), and now also carries the field in its
-- COLUMN and the problem in its DETAIL: callers (db::workflows) read the two parts as
-- they are instead of taking the message apart. A message naming no field is about the
-- workflow as a whole.
CREATE OR REPLACE FUNCTION ordinaut_workflow_invalid(msg text) RETURNS void
LANGUAGE plpgsql AS $$
DECLARE
    field text := 'workflow';
    reason text := msg;
BEGIN
    IF position(': ' IN msg) > 0 THEN
        field := split_part(msg, ': ', 1);
        reason := substr(msg, length(field) + 3);
    END IF;
    RAISE EXCEPTION '%', msg USING ERRCODE = '22023', COLUMN = field, DETAIL = reason;
END;
$$;

-- Cancelling one workflow step that still waits for its dependencies (issue 19): jobs
-- cancel, the API's POST /v1/jobs/{id}/cancel and the dashboard's Cancel button on a
-- waiting step's job page.
--
-- A waiting step has no due_work row for the job path to cancel. It is cancelled as its
-- job would be if it were live: the step ends cancelled without running, and its
-- dependents follow their edges' policies (cancel edges cancel them, ignore edges count
-- it off, cleanup edges trigger the cleanup), exactly as when a live step's job is
-- cancelled and the history trigger of 0016 settles it. A workflow retry runs it again
-- (it never ran, so revive takes it). The rest of the workflow is left alone.
--
-- Returns (cancelled, state): cancelled is true when this call cancelled the step; else
-- state is the step's current state (the caller then treats the job as live or ended),
-- or NULL when no workflow step has this job id. Locks the step's workflow, as every
-- change to a workflow's steps does.
CREATE FUNCTION ordinaut_workflow_cancel_step(job uuid, OUT cancelled boolean, OUT state text)
LANGUAGE plpgsql SET search_path FROM CURRENT AS $$
DECLARE
    wf   uuid;
    step text;
BEGIN
    cancelled := false;
    SELECT s.workflow_id INTO wf FROM workflow_steps s WHERE s.job_id = job;
    IF wf IS NULL THEN
        RETURN;
    END IF;
    PERFORM 1 FROM workflows w WHERE w.id = wf FOR UPDATE;
    UPDATE workflow_steps s
    SET state = 'cancelled', reason = 'cancelled by an operator while waiting', finished_at = now()
    WHERE s.job_id = job AND s.state = 'waiting'
    RETURNING s.name INTO step;
    IF step IS NULL THEN
        SELECT s.state INTO state FROM workflow_steps s WHERE s.job_id = job;
        RETURN;
    END IF;
    PERFORM ordinaut_workflow_propagate(ARRAY[wf], ARRAY[step]);
    PERFORM ordinaut_workflow_refresh(ARRAY[wf]);
    cancelled := true;
    state := 'cancelled';
END;
$$;

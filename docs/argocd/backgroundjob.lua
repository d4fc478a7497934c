-- Argo CD health of a stoker.dev BackgroundJob, from the phase the operator writes.
-- Succeeded: Healthy. Failed: Degraded. Held by its own spec.suspend: Suspended.
-- Anything else (Awaiting, Scheduled, Enqueued, Running, no status yet): Progressing.
local hs = {}
local status = obj.status
if status == nil or status.phase == nil then
  hs.status = "Progressing"
  hs.message = "Waiting for the Stoker operator to pick the job up"
  return hs
end
if status.phase == "Succeeded" then
  hs.status = "Healthy"
elseif status.phase == "Failed" then
  hs.status = "Degraded"
elseif status.phase == "Enqueued" and status.reason == "Suspended" then
  hs.status = "Suspended"
else
  hs.status = "Progressing"
end
hs.message = status.phase
if status.reason ~= nil then
  hs.message = hs.message .. " (" .. status.reason .. ")"
end
if status.message ~= nil and status.message ~= "" then
  hs.message = hs.message .. ": " .. status.message
end
return hs

-- Argo CD health of a stoker.dev RecurringJob.
-- Condition Valid=False (bad schedule or time zone): Degraded, even when suspended.
-- spec.suspend: Suspended. Status not yet written for this generation: Progressing.
-- Otherwise Healthy, with the next run in the message.
local hs = {}
local status = obj.status
local valid = nil
if status ~= nil and status.conditions ~= nil then
  for _, condition in ipairs(status.conditions) do
    if condition.type == "Valid" then
      valid = condition
    end
  end
end
if valid ~= nil and valid.status == "False" then
  hs.status = "Degraded"
  hs.message = (valid.reason or "Invalid") .. ": " .. (valid.message or "")
  return hs
end
if obj.spec ~= nil and obj.spec.suspend == true then
  hs.status = "Suspended"
  hs.message = "spec.suspend is true: no run is scheduled"
  return hs
end
local generation = obj.metadata and obj.metadata.generation
if valid == nil or (generation ~= nil and status.observedGeneration ~= nil
    and status.observedGeneration < generation) then
  hs.status = "Progressing"
  hs.message = "Waiting for the Stoker operator to read the schedule"
  return hs
end
hs.status = "Healthy"
if status.nextScheduleTime ~= nil then
  hs.message = "next run at " .. status.nextScheduleTime
else
  hs.message = valid.message or ""
end
return hs

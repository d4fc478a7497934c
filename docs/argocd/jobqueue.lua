-- Argo CD health of a stoker.dev JobQueue, from its Active condition.
-- Active=True: Healthy. Active=False (spec.suspend): Suspended.
-- No condition yet, or one written for an older generation: Progressing.
local hs = {}
local status = obj.status
local active = nil
if status ~= nil and status.conditions ~= nil then
  for _, condition in ipairs(status.conditions) do
    if condition.type == "Active" then
      active = condition
    end
  end
end
local generation = obj.metadata and obj.metadata.generation
if active == nil or (generation ~= nil and status.observedGeneration ~= nil
    and status.observedGeneration < generation) then
  hs.status = "Progressing"
  hs.message = "Waiting for the Stoker operator to read the queue"
  return hs
end
local figures = (status.enqueued or 0) .. " enqueued, " .. (status.running or 0) .. " running"
if active.status == "True" then
  hs.status = "Healthy"
  hs.message = figures
else
  hs.status = "Suspended"
  hs.message = (active.message or "suspended") .. "; " .. figures
end
return hs

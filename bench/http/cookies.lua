-- wrk script: each request carries one of the identity cookies in
-- $COOKIES (one cookie value per line), round robin, so an all-allowed load
-- spreads over many identities as real browsers would.
local cookies = {}
local n = 0
local i = 0

function init(args)
  for line in io.lines(os.getenv("COOKIES")) do
    n = n + 1
    cookies[n] = line
  end
  -- each wrk thread starts at a different place in the list
  i = math.random(n)
end

function request()
  i = i % n + 1
  return wrk.format("GET", nil, { ["Cookie"] = "user-limiter=" .. cookies[i] })
end

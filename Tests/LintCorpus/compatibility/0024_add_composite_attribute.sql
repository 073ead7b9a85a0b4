ALTER TYPE money_pair ADD ATTRIBUTE rate numeric;
